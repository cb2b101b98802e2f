"""Picture runs on several devices (``training.devices``): Lightning's DDP over gloo with two CPU
processes, real training of the small CNN on tiny pictures, a real MLflow store; and the sharded
picture batches and augmentation on their own."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from lightning_modules.image.data import BatchAugmenter, ImageBatches
from lightning_modules.tabular.data import sharded_steps
from studio import tracking
from studio.core.errors import TrainingError
from studio.core.spec import ImageSpec, RunSpec
from studio.engine.training import TrainingCancelled, evaluate_chosen_model, train
from studio.modalities.image.bundle import predict_pictures
from tests.training.test_ddp import Recorder, followers

EPOCHS = 2


def image_spec(dataset_id: str, devices: str | int = 2, **changes) -> RunSpec:
    spec = RunSpec.from_dict(
        {
            "task": "image_classification",
            "data": {"dataset_id": dataset_id},
            "training": {"epochs": EPOCHS, "devices": devices, "device": "cpu"},
            "early_stopping": {"enabled": False},
        }
    )
    return spec.with_changes(**changes) if changes else spec


def test_two_processes_train_one_picture_run_over_every_test_picture(shapes_dataset, tmp_path):
    from studio.app import images_view
    from studio.bundle import load_bundle

    hooks = Recorder()
    bundle = tmp_path / "ddp.zip"
    result = train(image_spec(shapes_dataset.id), hooks=hooks, bundle_out=bundle)

    assert result.status == "FINISHED" and result.epochs_run == EPOCHS and result.train_rows == 42
    run = tracking.get_run(result.run_id)
    assert run.status == "FINISHED" and run.tags[tracking.TAG_DEVICE] == "CPU, 2 processes"
    client = tracking.client()
    # Every epoch exactly once (rank 0 logs; the other rank logs nothing).
    epochs = [m.value for m in client.get_metric_history(result.run_id, "epoch")]
    assert epochs == [float(e) for e in range(1, EPOCHS + 1)]
    val_steps = [m.step for m in client.get_metric_history(result.run_id, "val/accuracy")]
    assert len(val_steps) == EPOCHS == len(set(val_steps))
    # The batch size keeps its meaning: 42 pictures in batches of 21 (automatic), 2 updates per epoch.
    assert run.tags[tracking.TAG_BATCH_SIZE] == "21" and run.tags[tracking.TAG_STEPS_PER_EPOCH] == "2"
    assert len(client.get_metric_history(result.run_id, "test/accuracy")) == 1
    assert not followers()  # the other rank has exited

    # Rank 0's confusion matrix and per-picture predictions cover all 9 test pictures, in order.
    matrix = images_view.confusion_matrix(result.run_id)
    assert matrix is not None and sum(map(sum, matrix.counts)) == 9
    ddp_rows = images_view.test_split_predictions(result.run_id)["rows"]
    assert len(ddp_rows) == 9 and len({row["image"] for row in ddp_rows}) == 9

    # The test metrics cover every test picture, not rank 0's share: a single-process evaluation of the
    # bundled model on the whole test split gives the same numbers and the same per-picture answers.
    whole = evaluate_chosen_model(image_spec(shapes_dataset.id, devices=1), bundle, result.run_id)
    for name, value in whole.test_metrics.items():
        assert result.test_metrics[name] == pytest.approx(value, abs=1e-5), name
    one_rows = images_view.test_split_predictions(result.run_id)["rows"]
    assert [r["image"] for r in ddp_rows] == [r["image"] for r in one_rows]
    for ddp_row, one_row in zip(ddp_rows, one_rows, strict=True):
        assert ddp_row["label"] == one_row["label"]
        assert ddp_row["probabilities"] == pytest.approx(one_row["probabilities"], abs=1e-4)

    # The bundle is a normal picture bundle: it loads and predicts.
    folder = shapes_dataset.path
    pictures = sorted(str(p) for p in folder.rglob("*.png"))[:4]
    with load_bundle(bundle) as loaded:
        predicted = predict_pictures(loaded, pictures, [f"p{i}" for i in range(4)])
    assert len(predicted) == 4 and set(predicted["predicted_label"]) <= {"blue", "red", "stripes"}
    with zipfile.ZipFile(bundle) as zf:
        assert any(name.endswith("MLmodel") for name in zf.namelist())


def test_too_many_devices_for_the_pictures_is_refused_in_plain_words(shapes_dataset):
    spec = image_spec(shapes_dataset.id, devices=20)  # batches of 21 pictures: fewer than two each
    with pytest.raises(TrainingError, match="42 training pictures are too few to share among 20 devices"):
        train(spec)


@pytest.mark.parametrize("devices", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_a_pretrained_frozen_network_keeps_its_backbone(shapes_dataset, tmp_path, monkeypatch, devices):
    """The other process finds the pretrained weights where rank 0 does (the torch hub cache named by
    ``TORCH_HOME``, which it inherits) and the picture cache rank 0 built; the frozen backbone, its
    batch-norm statistics included, stays as it was loaded (on one device too)."""
    from lightning_modules.image.networks import build_image_network
    from studio.bundle.layout import WEIGHTS_FILE

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    reference = build_image_network(
        "resnet18", {"pretrained": False, "freeze_backbone": False}, n_classes=1000
    )
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    spec = image_spec(
        shapes_dataset.id,
        **{
            "architecture.name": "resnet18",
            "architecture.params": {"pretrained": True, "freeze_backbone": True},
            "image.size": 32,
            "training.epochs": 1,
        },
    )
    result = train(spec.with_changes(**{"training.devices": devices}), bundle_out=tmp_path / "resnet.zip")

    assert result.status == "FINISHED" and result.epochs_run == 1 and not followers()
    folder = shapes_dataset.path / "cache"
    assert [p.name for p in folder.iterdir()] == ["rgb-32px-v1.npy"]  # one cache, no stray temporary file
    with zipfile.ZipFile(result.bundle_path) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f"artifacts/{WEIGHTS_FILE}"))
        with zf.open(member) as weights:
            trained = torch.load(weights, map_location="cpu", weights_only=True)
    loaded = reference.state_dict()
    assert torch.equal(trained["conv1.weight"], loaded["conv1.weight"])  # frozen: as loaded
    for name in ("bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_mean"):
        assert torch.equal(trained[name], loaded[name]), name


def test_too_few_held_back_pictures_for_the_devices_are_refused_in_plain_words():
    from types import SimpleNamespace

    from lightning_modules.image.data import ImageDataModule

    def data(world: int, val: int) -> SimpleNamespace:
        return SimpleNamespace(
            world_size=world, batch_size=8, train_idx=range(40), val_idx=range(val), test_idx=range(5)
        )

    ImageDataModule.check_world_size(data(4, 4))  # one validation picture per device is enough
    with pytest.raises(TrainingError, match="holds back only 3 pictures .* fewer than the 4 devices"):
        ImageDataModule.check_world_size(data(4, 3))


# --------------------------------------------------------------------------- the batches on their own
def pictures(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` one-pixel "pictures" whose value is their own number, and labels likewise."""
    return torch.arange(n).view(n, 1, 1, 1), torch.arange(n)


@pytest.mark.parametrize(("train_rows", "batch"), [(103, 16), (42, 21), (10, 4), (9, 4)])
def test_training_shares_split_each_batch_of_the_one_device_order(train_rows, batch):
    images, labels = pictures(200)
    index = np.sort(np.random.default_rng(1).choice(200, train_rows, replace=False))
    one = ImageBatches(images, labels, index, batch, shuffle=True, seed=7)
    ranks = [ImageBatches(images, labels, index, batch, True, 7, rank=r, world=2) for r in range(2)]
    steps = sharded_steps(train_rows, batch, 2)
    for _epoch in range(2):  # a new order every epoch, the same on both processes
        whole = [b[1] for b in one]
        shares = [list(r) for r in ranks]
        assert len(shares[0]) == len(shares[1]) == len(ranks[0]) == steps  # the same steps everywhere
        used = []
        for step in range(steps):
            parts = [shares[r][step] for r in range(2)]
            together = torch.cat([p[1] for p in parts])
            # the shares of a step are the one-device batch, in its order: batch size = pictures per update
            assert together.tolist() == whole[step].tolist()
            assert min(len(p[1]) for p in parts) >= 2  # batch norm needs two pictures per process
            assert torch.equal(parts[0][0].view(-1), parts[0][1])  # pictures and labels stay together
            starts = [p[2] for p in parts]  # where each share lies in its batch, for the augmentation
            assert starts == [(0, len(together)), (len(parts[0][1]), len(together))]
            used += together.tolist()
        assert len(used) == len(set(used)) and set(used) <= set(index.tolist())
        assert len(used) == train_rows - (train_rows % batch if train_rows % batch < 4 else 0)


def test_a_resumed_share_continues_the_same_order():
    images, labels = pictures(50)
    index = np.arange(50)
    straight = ImageBatches(images, labels, index, 8, True, 3, rank=1, world=2)
    list(straight)
    saved = straight.generator.get_state()  # what rank 0's checkpoint keeps: the same on every rank
    expected = [b[1].tolist() for b in straight]
    resumed = ImageBatches(images, labels, index, 8, True, 3, rank=1, world=2)
    resumed.generator.set_state(saved)
    assert [b[1].tolist() for b in resumed] == expected


@pytest.mark.parametrize(("rows", "batch"), [(9, 256), (3, 1), (7, 2), (600, 256), (1, 256)])
def test_evaluation_shares_cover_every_picture_once_in_order_in_as_many_batches(rows, batch):
    images, labels = pictures(rows + 5)
    index = np.arange(5, rows + 5)
    ranks = [list(ImageBatches(images, labels, index, batch, False, 0, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])  # the same number of steps on every process (empty ones too)
    assert all(len(b) == 2 for share in ranks for b in share)  # (pictures, labels): no share marker
    # rank 0's share, then rank 1's: the split's own order (the module gathers them in rank order)
    assert torch.cat([b[1] for share in ranks for b in share]).tolist() == index.tolist()


def test_each_process_varies_its_share_as_one_device_would():
    settings = ImageSpec(crop_scale=0.6, rotation_degrees=20.0, color_jitter=0.3, vertical_flip=True)
    x = torch.rand(7, 3, 8, 8)
    one = BatchAugmenter(settings, seed=4)
    ranks = [BatchAugmenter(settings, seed=4) for _ in range(2)]
    for _step in range(2):
        expected = one(x)
        parts = torch.tensor_split(x, 2)
        varied = torch.cat([ranks[0](parts[0], (0, 7)), ranks[1](parts[1], (len(parts[0]), 7))])
        assert torch.allclose(varied, expected, atol=1e-6)
    # every process's generator stays where one device's is (a checkpoint keeps rank 0's)
    assert ranks[0].rng.bit_generator.state == ranks[1].rng.bit_generator.state == one.rng.bit_generator.state


@pytest.mark.slow
def test_a_stopped_two_process_picture_run_resumes_to_the_straight_result(
    shapes_dataset, tmp_path, monkeypatch
):
    """Every process continues from rank 0's checkpoint: the same picture order and augmentation as the
    straight run (rank 0's generators are every process's), so the same weights at the end."""
    from studio.engine.training import latest_checkpoint
    from tests.training.test_checkpoints import max_weight_difference

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")  # a checkpoint at the end of every epoch
    spec = image_spec(shapes_dataset.id, **{"training.epochs": 4, "training.batch_size": 8})
    assert spec.image.augments
    straight = train(spec, checkpoint_dir=tmp_path / "straight", bundle_out=tmp_path / "straight.zip")
    stopped = Recorder(stop_at_epoch=2)
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=tmp_path / "stopped", hooks=stopped)
    saved = latest_checkpoint(tmp_path / "stopped")
    assert saved is not None and 2 <= saved.epoch < 4

    resumed = train(
        spec,
        checkpoint_dir=tmp_path / "stopped",
        resume_run_id=stopped.run_id,
        bundle_out=tmp_path / "resumed.zip",
    )

    assert resumed.run_id == stopped.run_id and resumed.epochs_run == 4
    epochs = [m.value for m in tracking.client().get_metric_history(resumed.run_id, "epoch")]
    assert epochs == [1.0, 2.0, 3.0, 4.0]  # each epoch once, across the stop
    assert max_weight_difference(tmp_path / "straight.zip", tmp_path / "resumed.zip") <= 1e-5
    assert resumed.test_metrics == pytest.approx(straight.test_metrics, abs=1e-5)
    assert not followers()


# --------------------------------------------------------------------------- real GPUs (pytest -m gpu)
def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_one_picture_run_over_nccl(shapes_dataset, tmp_path):
    from studio.app import images_view

    bundle = tmp_path / "gpus.zip"
    result = train(image_spec(shapes_dataset.id, **{"training.device": "cuda"}), bundle_out=bundle)

    assert result.status == "FINISHED" and result.epochs_run == EPOCHS
    assert tracking.get_run(result.run_id).tags[tracking.TAG_DEVICE].startswith("2 GPUs: ")
    matrix = images_view.confusion_matrix(result.run_id)
    assert matrix is not None and sum(map(sum, matrix.counts)) == 9
    one_gpu = image_spec(shapes_dataset.id, devices=1, **{"training.device": "cuda"})
    whole = evaluate_chosen_model(one_gpu, bundle, result.run_id)
    for name, value in whole.test_metrics.items():  # mixed precision on GPUs: a little looser than on the CPU
        assert result.test_metrics[name] == pytest.approx(value, abs=1e-2), name
    assert not followers()
