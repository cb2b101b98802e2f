"""Checkpoints and resuming in ``studio.engine.training.train`` (real tiny runs on the CPU, a real MLflow store):
a run stopped after an epoch continues in the same MLflow run and ends exactly as a straight run; the
data order continues; only the latest checkpoint is kept; a full disk stops the run plainly."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from studio import tracking
from studio.core.spec import RunSpec
from studio.engine.checkpoints import latest_checkpoint
from studio.engine.training import CheckpointSpaceError, TrainHooks, TrainingCancelled, train


def resumable_spec(dataset_id: str, **changes) -> RunSpec:
    """Cosine schedule, AdamW and dropout: every piece of state a resume must restore matters here."""
    spec = RunSpec.from_dict(
        {
            "name": "resumable",
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "label"},
            "architecture": {"name": "mlp", "params": {"dropout": 0.2}},
            "training": {"epochs": 6, "batch_size": 16},
            "scheduler": {"name": "cosine"},
            "early_stopping": {"enabled": False},
        }
    )
    return spec.with_changes(**changes) if changes else spec


class StopAfterEpoch(TrainHooks):
    """Cancels the run as soon as it trains past ``epoch`` (whose checkpoint is then written)."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.seen = 0

    def on_progress(self, progress) -> None:
        self.seen = progress.epoch

    def should_stop(self) -> bool:
        return self.seen > self.epoch


def bundle_weights(path: Path) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(path) as bundle:
        name = next(n for n in bundle.namelist() if n.endswith("weights.pt"))
        return torch.load(io.BytesIO(bundle.read(name)), weights_only=True)


def max_weight_difference(a: Path, b: Path) -> float:
    left, right = bundle_weights(a), bundle_weights(b)
    assert left.keys() == right.keys()
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left if left[k].numel())


def histories(run_id: str) -> dict[str, list[tuple[int, float]]]:
    return tracking.metric_history(run_id)


@pytest.fixture
def every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")


def check_only_the_latest_checkpoint_is_kept_and_it_loads_safely(result, folder: Path) -> None:
    """A finished run's checkpoint folder after a checkpoint at the end of every one of its 6 epochs."""
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0006.ckpt"]  # no older epoch, no partial file
    checkpoint = torch.load(folder / "epoch-0006.ckpt", weights_only=True)  # tensors and plain values only
    assert checkpoint["studio_module"]["optimizer_steps"] > 0
    assert checkpoint["callbacks"]["BestWeights"]["best_state"]  # the best epoch's weights travel with it
    assert checkpoint["TabularDataModule"]["order"].dtype == torch.uint8  # the data order generator
    assert checkpoint["callbacks"]["EpochCheckpoint"]["settings"] == {
        "batch_size": 16,
        "accumulate": 1,
        "retried": False,
        "notes": [],
    }
    print(
        f"checkpoint: {result.checkpoint_bytes / 1024:.0f} KiB, {result.checkpoint_seconds / 6 * 1000:.1f} ms/epoch"
    )


def test_a_stopped_run_resumes_in_the_same_mlflow_run_and_ends_as_a_straight_run(
    tiny_dataset, tmp_path: Path, every_epoch
) -> None:
    """The straight run also checks that only the latest checkpoint is kept and that it loads safely (one
    run serves both)."""
    spec = resumable_spec(tiny_dataset.id)
    straight = train(spec, checkpoint_dir=tmp_path / "straight", bundle_out=tmp_path / "straight.zip")
    check_only_the_latest_checkpoint_is_kept_and_it_loads_safely(straight, tmp_path / "straight")

    folder = tmp_path / "stopped"
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=folder, hooks=StopAfterEpoch(3))
    saved = latest_checkpoint(folder)
    assert saved is not None and saved.epoch >= 3
    (run,) = [r for r in tracking.list_runs(tiny_dataset.id) if r.run_id != straight.run_id]
    assert run.status == "KILLED"

    resumed = train(
        spec, checkpoint_dir=folder, resume_run_id=run.run_id, bundle_out=tmp_path / "resumed.zip"
    )

    assert resumed.run_id == run.run_id and tracking.get_run(run.run_id).status == "FINISHED"
    difference = max_weight_difference(tmp_path / "straight.zip", tmp_path / "resumed.zip")
    print(f"largest weight difference, resumed vs straight: {difference:g}")
    assert difference <= 1e-6
    assert resumed.test_metrics == pytest.approx(straight.test_metrics, abs=1e-6)
    expected, got = histories(straight.run_id), histories(run.run_id)
    assert got.keys() == expected.keys()
    for key, points in expected.items():
        steps = [step for step, _ in got[key]]
        assert steps == [step for step, _ in points], key  # the same points, none twice
        assert [value for _, value in got[key]] == pytest.approx([v for _, v in points], abs=1e-6), key


def test_early_stopping_and_the_best_epoch_survive_a_resume(
    tiny_dataset, tmp_path: Path, every_epoch
) -> None:
    spec = resumable_spec(
        tiny_dataset.id,
        **{"training.epochs": 40, "early_stopping.enabled": True, "early_stopping.patience": 3},
    )
    straight = train(spec, checkpoint_dir=tmp_path / "straight")
    assert straight.epochs_run < 40  # early stopping ended it

    folder = tmp_path / "stopped"
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=folder, hooks=StopAfterEpoch(straight.epochs_run - 2))
    (run,) = [r for r in tracking.list_runs(tiny_dataset.id) if r.run_id != straight.run_id]
    resumed = train(spec, checkpoint_dir=folder, resume_run_id=run.run_id)

    assert (resumed.epochs_run, resumed.best_epoch) == (straight.epochs_run, straight.best_epoch)
    assert resumed.test_metrics == pytest.approx(straight.test_metrics, abs=1e-6)


def test_checkpoints_are_at_least_the_set_seconds_apart(tiny_dataset, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "3600")
    folder = tmp_path / "checkpoints"
    train(resumable_spec(tiny_dataset.id), checkpoint_dir=folder)
    assert latest_checkpoint(folder) is None


def test_data_order_continues_after_its_state_is_restored(tiny_dataset) -> None:
    """The training order is drawn once per epoch from the loader's generator: restoring its state
    (what a checkpoint keeps) gives the next epochs the straight run's order, whatever the batch size."""
    from studio.data import load_profile, load_table
    from studio.modalities.tabular.prepare import table_data_module

    spec = resumable_spec(tiny_dataset.id)
    frame, profile = load_table(tiny_dataset.id), load_profile(tiny_dataset.id)

    def orders(module: Any, epochs: int) -> list[list[float]]:
        loader = module.train_dataloader()
        return [torch.cat([batch[0][:, 0] for batch in loader]).tolist() for _ in range(epochs)]

    straight = orders(table_data_module(frame, profile, spec), 4)
    first = table_data_module(frame, profile, spec)
    assert orders(first, 2) == straight[:2]
    state = first.state_dict()
    halved = table_data_module(frame, profile, spec.with_changes(**{"training.batch_size": 8}))
    halved.load_state_dict(state)
    assert orders(halved, 2) == straight[2:]
    assert straight[0] != straight[1]  # it does reshuffle every epoch


def test_a_full_disk_stops_the_run_before_a_checkpoint_with_a_plain_message(
    tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every_epoch
) -> None:
    real = shutil.disk_usage
    calls = {"n": 0}

    def nearly_full(path):
        calls["n"] += 1
        usage = real(path)
        return usage._replace(free=usage.free if calls["n"] <= 2 else 20 * 2**20)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    folder = tmp_path / "checkpoints"
    with pytest.raises(CheckpointSpaceError) as caught:
        train(resumable_spec(tiny_dataset.id), checkpoint_dir=folder)

    message = str(caught.value)
    print(message)
    assert "not enough free disk space to save this run's progress" in message
    assert str(folder) in message and "20.0 MB is free" in message
    assert "Its progress up to epoch 2 is saved: free some space, then resume the run." in message
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0002.ckpt"]  # nothing half-written
    (run,) = tracking.list_runs(tiny_dataset.id)
    assert run.status == "FAILED" and "disk space" in run.tags[tracking.TAG_FAILURE]
