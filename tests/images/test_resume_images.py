"""Resuming and the out-of-memory retry for pictures (the small CNN, real tiny runs on the CPU): the
augmentation's own random generator and the picture order continue where the checkpoint left them."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import tracking
from studio.core.spec import RunSpec
from studio.engine.training import TrainHooks, TrainingCancelled, train
from tests.training.test_checkpoints import max_weight_difference


def spec_for(dataset_id: str) -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": "pictures",
            "task": "image_classification",
            "data": {"dataset_id": dataset_id},
            "training": {"epochs": 4, "batch_size": 8},
            "image": {"rotation_degrees": 15.0, "color_jitter": 0.2},  # random per picture and epoch
            "early_stopping": {"enabled": False},
        }
    )


class StopAfterEpoch(TrainHooks):
    def __init__(self, epoch: int):
        self.epoch, self.seen = epoch, 0

    def on_progress(self, progress) -> None:
        self.seen = progress.epoch

    def should_stop(self) -> bool:
        return self.seen > self.epoch


def test_an_image_run_resumes_to_the_straight_result(
    shapes_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    spec = spec_for(shapes_dataset.id)
    assert spec.image.augments
    straight = train(spec, checkpoint_dir=tmp_path / "straight", bundle_out=tmp_path / "straight.zip")
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=tmp_path / "stopped", hooks=StopAfterEpoch(2))
    (run,) = [r for r in tracking.list_runs(shapes_dataset.id) if r.run_id != straight.run_id]

    resumed = train(
        spec,
        checkpoint_dir=tmp_path / "stopped",
        resume_run_id=run.run_id,
        bundle_out=tmp_path / "resumed.zip",
    )

    assert max_weight_difference(tmp_path / "straight.zip", tmp_path / "resumed.zip") <= 1e-6
    assert resumed.test_metrics == pytest.approx(straight.test_metrics, abs=1e-6)


def test_an_image_run_that_runs_out_of_memory_goes_on_with_half_the_batch(
    shapes_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "8")  # 42 pictures, 6 steps of 8 per epoch: in epoch 2
    result = train(spec_for(shapes_dataset.id), checkpoint_dir=tmp_path / "checkpoints")
    assert result.retry_note == (
        "Ran out of memory at batch size 8; continued from epoch 2 with batch size 4 × 2 accumulated steps."
    )
    history = tracking.metric_history(result.run_id, ["epoch"])["epoch"]
    assert [step for step, _ in history] == [6, 12, 18, 24]  # as many optimiser steps per epoch as before
