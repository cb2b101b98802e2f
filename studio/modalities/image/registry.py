"""The picture task (``image_classification``: which class a picture shows) with its spec defaults, and
the picture bundles' flavour, registered where the spec and the bundle code can see them (cheap: no
torch)."""

from __future__ import annotations

from typing import Any

from studio.bundle.layout import register_flavour
from studio.core.tasks import TaskInfo, register_data_kind, register_task
from studio.modalities import register_lazily
from studio.modalities.image.bundle import FLAVOUR, KIND

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

register_data_kind("images", "holds pictures", "a zip of picture folders")
register_task(
    TaskInfo(
        "image_classification",
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
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.image.modality")
