"""Runs whose loss becomes NaN or infinite: they stop at once, fail plainly with no model file, or keep
a good earlier epoch with a note that says so; the time left is measured from this run's epochs."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from studio import tracking
from studio.core.errors import TrainingError
from studio.core.spec import OptimizerSpec, RunSpec
from studio.engine.training import (
    TrainHooks,
    best_epoch_is_usable,
    divergence_note,
    learning_rate_advice,
    train,
)


def spec(dataset_id: str, task: str, target: str, **optimizer) -> RunSpec:
    scheduler = optimizer.pop("scheduler", "none")
    epochs = optimizer.pop("epochs", 5)
    return RunSpec.from_dict(
        {
            "task": task,
            "data": {"dataset_id": dataset_id, "target": target},
            "training": {"epochs": epochs, "batch_size": 16},
            "early_stopping": {"patience": 50},
            "optimizer": optimizer,
            "scheduler": {"name": scheduler},
        }
    )


class Recorder(TrainHooks):
    def __init__(self) -> None:
        self.progress = []

    def on_progress(self, progress):
        self.progress.append(progress)


def test_a_diverged_run_fails_with_a_plain_reason_and_writes_no_model(tiny_dataset, tmp_path: Path) -> None:
    hooks, bundle = Recorder(), tmp_path / "model.zip"
    with pytest.raises(TrainingError) as caught:
        train(
            spec(tiny_dataset.id, "regression", "amount", name="sgd", learning_rate=10.0),
            hooks=hooks,
            bundle_out=bundle,
        )
    reason = str(caught.value)
    assert reason.startswith("The training diverged at epoch 1, where the loss became")
    assert reason.endswith("the learning rate 10 is far too high for SGD; try 0.01.")
    assert not bundle.exists()
    assert hooks.progress[-1].epoch == 1  # stopped at once, not after the 5 epochs asked for

    (run,) = tracking.list_runs(tiny_dataset.id)
    assert run.status == "FAILED"
    assert run.tags[tracking.TAG_FAILURE] == reason
    assert tracking.TAG_BUNDLE not in run.tags
    assert "bundle" not in {a.path for a in tracking.client().list_artifacts(run.run_id)}
    losses = [v for _, v in tracking.metric_history(run.run_id, ["train/loss"])["train/loss"]]
    assert all(math.isfinite(v) for v in losses)  # the curve stops at the last finite step


def test_a_run_that_diverges_later_keeps_its_good_best_epoch_with_a_note(
    tiny_dataset, tmp_path: Path
) -> None:
    # One-cycle warms the learning rate up: epoch 1 learns, the peak (0.15 with SGD) then diverges.
    bundle = tmp_path / "model.zip"
    result = train(
        spec(
            tiny_dataset.id,
            "regression",
            "amount",
            name="sgd",
            learning_rate=0.15,
            scheduler="onecycle",
            epochs=12,
        ),
        bundle_out=bundle,
    )
    assert result.note is not None
    assert result.best_epoch is not None and result.best_epoch < result.epochs_run < 12
    assert result.note.startswith(f"Stopped at epoch {result.epochs_run} when the loss became")
    assert f"kept the best epoch, {result.best_epoch}. The learning rate 0.15 is far too high" in result.note
    assert all(math.isfinite(v) for v in result.test_metrics.values())
    assert result.test_metrics["test/r2"] > 0

    run = tracking.get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.tags[tracking.TAG_NOTE] == result.note
    assert run.metrics["best_epoch"] == result.best_epoch
    with zipfile.ZipFile(bundle) as zf:
        info = json.loads(zf.read("artifacts/studio_model.json"))
        weights = torch.load(zf.open("artifacts/weights.pt"), weights_only=True)
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert info["metrics"]["test/r2"] == pytest.approx(result.test_metrics["test/r2"])


def test_weights_that_overflow_while_the_loss_stays_finite_also_stop_the_run(tiny_dataset) -> None:
    # SGD at 10 on this classification table: batch norm's running variance overflows to infinity
    # while the training loss stays finite (measured: epoch 3); the model would predict nonsense.
    with pytest.raises(
        TrainingError, match=r"^The training diverged at epoch \d+, where the model's weights"
    ):
        train(spec(tiny_dataset.id, "classification", "label", name="sgd", learning_rate=10.0, epochs=6))
    (run,) = tracking.list_runs(tiny_dataset.id)
    assert run.status == "FAILED"


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        ({"name": "sgd", "learning_rate": 10.0}, "the learning rate 10 is far too high for SGD; try 0.01."),
        ({"name": "sgd", "learning_rate": 0.05}, "the learning rate 0.05 is too high for SGD; try 0.01."),
        (
            {"name": "adam", "learning_rate": 0.5},
            "the learning rate 0.5 is far too high for Adam; try 0.001.",
        ),
        (
            {"name": "adamw", "learning_rate": 0.003},
            "the learning rate 0.003 is too high for AdamW; try 0.001.",
        ),
        (
            {"name": "adamw", "learning_rate": 0.001},
            "try a learning rate 10 times smaller (0.0001) or turn on gradient clipping "
            "(advanced Training settings).",
        ),
        (
            {"name": "sgd", "learning_rate": 3.0, "weight_decay": 1.0},
            "the learning rate 3 is far too high for SGD; try 0.01. The weight decay 1 is very high too; "
            "0.0001 is usual.",
        ),
    ],
)
def test_the_advice_suits_the_optimiser(optimizer: dict, expected: str) -> None:
    assert learning_rate_advice(OptimizerSpec(**optimizer)) == expected


def test_the_note_names_the_epochs() -> None:
    diverged = SimpleNamespace(epoch=15, value=math.nan, where="training")
    note = divergence_note(diverged, 9, OptimizerSpec(name="sgd", learning_rate=10.0))
    assert note == (
        "Stopped at epoch 15 when the loss became NaN (not a number); kept the best epoch, 9. "
        "The learning rate 10 is far too high for SGD; try 0.01."
    )


def _best(metrics: dict[str, float], finite: bool = True, epoch: int | None = 3) -> SimpleNamespace:
    return SimpleNamespace(best_epoch=epoch, best_metrics=metrics, best_state_is_finite=lambda: finite)


@pytest.mark.parametrize(
    ("task", "best", "shares", "usable"),
    [
        ("regression", _best({"val/r2": 0.4, "val/loss": 0.6}), [], True),
        ("regression", _best({"val/r2": -0.1, "val/loss": 1.1}), [], False),  # worse than the average
        ("regression", _best({"val/r2": 0.4}, finite=False), [], False),  # a weight is NaN
        ("regression", _best({}, epoch=None), [], False),  # no epoch was ever kept
        ("classification", _best({"val/accuracy": 0.9, "val/loss": 0.3}), [0.5, 0.5], True),
        ("classification", _best({"val/accuracy": 0.5, "val/loss": 0.3}), [0.5, 0.5], False),
        # right often enough, but so sure of its wrong answers that its loss is worse than a guess:
        ("classification", _best({"val/accuracy": 0.6, "val/loss": 4e7}), [0.5, 0.5], False),
        ("classification", _best({"val/accuracy": math.nan, "val/loss": 0.3}), [0.5, 0.5], False),
    ],
)
def test_the_rule_for_keeping_the_best_epoch(task, best, shares, usable) -> None:
    assert best_epoch_is_usable(best, task, shares) is usable


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_left_comes_from_this_runs_epochs_after_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_modules import callbacks

    clock = _Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    seen: list[dict] = []
    reporter = callbacks.TrainingReporter(
        lambda *_: None, lambda: None, seen.append, lambda: False, steps_per_epoch=10, progress_seconds=0
    )
    module = SimpleNamespace(
        optimizer_steps=0, pop_step_losses=lambda: [0.5] * 10, pop_train_accuracy=lambda: None
    )
    trainer = SimpleNamespace(current_epoch=0, max_epochs=10, global_step=0)

    def epoch(seconds: float) -> None:
        reporter.on_train_epoch_start(trainer, module)
        clock.now += seconds / 2
        module.optimizer_steps += 10
        reporter.on_train_batch_end(trainer, module, None, None, 0)
        clock.now += seconds / 2
        reporter.on_train_epoch_end(trainer, module)
        trainer.current_epoch += 1

    clock.now += 30.0  # start-up (imports, data to the device) before the first epoch
    epoch(12.0)  # the first epoch is slow too (first batches, caches)
    assert seen[0]["eta_seconds"] is None  # mid-epoch 1: nothing measured yet
    assert seen[-1]["eta_seconds"] == pytest.approx(9 * 12.0)  # only the first epoch so far
    epoch(2.0)
    assert seen[-1]["eta_seconds"] == pytest.approx(8 * 2.0)  # the first epoch no longer counts
    epoch(4.0)
    assert seen[-1]["eta_seconds"] == pytest.approx(7 * 3.0)
    reporter.on_train_epoch_start(trainer, module)
    clock.now += 1.0
    module.optimizer_steps += 5
    reporter.on_train_batch_end(trainer, module, None, None, 0)
    assert seen[-1]["eta_seconds"] == pytest.approx(7 * 3.0 - 1.0)  # part of epoch 4 is done


def test_a_non_finite_step_loss_stops_at_once_and_logs_only_finite_points() -> None:
    from lightning_modules import callbacks

    logged: list[tuple[dict, int]] = []
    reporter = callbacks.TrainingReporter(
        lambda metrics, step: logged.append((metrics, step)),
        lambda: None,
        lambda _: None,
        lambda: False,
        steps_per_epoch=64,
        points_per_epoch=64,
    )
    module = SimpleNamespace(
        optimizer_steps=6, pop_step_losses=lambda: [1.0, 2.0, 3.0, math.inf, math.nan, 1.0]
    )
    trainer = SimpleNamespace(current_epoch=4, max_epochs=10, global_step=0)
    with pytest.raises(callbacks.TrainingDivergedSignal) as caught:
        reporter.on_train_batch_end(trainer, module, None, None, 0)
    assert (caught.value.epoch, caught.value.value, caught.value.where) == (5, math.inf, "training")
    assert [step for _, step in logged] == [1, 2, 3]
    assert all(math.isfinite(m["train/loss"]) for m, _ in logged)
