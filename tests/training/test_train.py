"""Real (tiny, CPU, seconds) training runs through ``studio.engine.training.train`` with a real MLflow store."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from studio import tracking
from studio.core.errors import TrainingError
from studio.core.spec import RunSpec
from studio.engine.training import TrainHooks, TrainingCancelled, train


def make_spec(dataset_id: str, task: str, target: str, **changes) -> RunSpec:
    spec = RunSpec.from_dict(
        {
            "task": task,
            "data": {"dataset_id": dataset_id, "target": target},
            "training": {"epochs": 8, "batch_size": 32},
            "early_stopping": {"patience": 50},
        }
    )
    return spec.with_changes(**changes) if changes else spec


class Recorder(TrainHooks):
    def __init__(self, stop_after: int | None = None):
        self.started: tuple[str, str] | None = None
        self.progress = []
        self.stop_after = stop_after

    def on_run_started(self, run_id, experiment_id):
        self.started = (run_id, experiment_id)

    def on_progress(self, progress):
        self.progress.append(progress)

    def should_stop(self):
        return self.stop_after is not None and len(self.progress) >= self.stop_after


def test_classification_run_is_tracked_with_curves_and_bundle(tiny_dataset, tmp_path):
    hooks = Recorder()
    bundle = tmp_path / "out" / "model.zip"
    result = train(make_spec(tiny_dataset.id, "classification", "label"), hooks=hooks, bundle_out=bundle)

    assert result.status == "FINISHED"
    assert hooks.started == (result.run_id, result.experiment_id)
    assert set(result.test_metrics) >= {"test/loss", "test/accuracy", "test/f1_macro", "test/auroc"}
    assert result.test_metrics["test/accuracy"] > 0.75  # separable pattern: well above the 50% baseline
    assert "row_id" in result.ignored_columns  # identifiers never feed the model
    assert bundle.is_file() and zipfile.is_zipfile(bundle)

    run = tracking.get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.name and run.tags[tracking.TAG_DATASET] == tiny_dataset.id
    assert run.tags[tracking.TAG_TASK] == "classification"
    assert run.tags[tracking.TAG_ARCH] == "mlp"
    assert run.params["training.epochs"] == "8"
    assert run.params["architecture.params.width"] == "128"
    history = tracking.metric_history(result.run_id)
    assert len(history["train/loss"]) >= 8
    assert [v for _, v in history["epoch"]] == [float(e) for e in range(1, 9)]
    for name in ("val/loss", "val/accuracy", "val/f1_macro", "val/auroc"):
        assert len(history[name]) == 8, name
    assert history["test/accuracy"][0][1] == pytest.approx(result.test_metrics["test/accuracy"])
    # Steps only grow: the curves are drawable against the step axis.
    steps = [s for s, _ in history["train/loss"]]
    assert steps == sorted(steps)
    artifacts = {a.path for a in tracking.client().list_artifacts(result.run_id)}
    assert {tracking.SPEC_ARTIFACT, tracking.PROFILE_ARTIFACT, "bundle"} <= artifacts
    assert RunSpec.from_json(
        Path(tracking.client().download_artifacts(result.run_id, "spec.json", str(tmp_path))).read_text()
    )
    assert hooks.progress and hooks.progress[-1].epoch == 8


def test_regression_run_reports_metrics_in_original_units(tiny_dataset):
    result = train(make_spec(tiny_dataset.id, "regression", "amount", **{"training.epochs": 15}))
    metrics = result.test_metrics
    assert set(metrics) >= {"test/mae", "test/rmse", "test/r2"}
    assert metrics["test/r2"] > 0.5
    assert metrics["test/mae"] < 20  # the target spreads over ~±40 around 100: errors are in those units
    history = tracking.metric_history(result.run_id, ["val/r2", "val/mae"])
    assert len(history["val/r2"]) == 15


def test_linear_architecture_and_sgd_with_cosine_and_onehot(tiny_dataset):
    spec = make_spec(
        tiny_dataset.id,
        "classification",
        "label",
        **{
            "architecture.name": "linear",
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 0.05,
            "scheduler.name": "cosine",
            "preprocessing.categorical_encoding": "onehot",
            "training.gradient_clip": 1.0,
        },
    )
    result = train(spec)
    assert result.test_metrics["test/accuracy"] > 0.75


def test_early_stopping_stops_before_max_epochs(tiny_dataset):
    spec = make_spec(
        tiny_dataset.id, "classification", "label", **{"training.epochs": 200, "early_stopping.patience": 2}
    )
    result = train(spec)
    assert result.epochs_run < 200
    assert result.best_epoch is not None and result.best_epoch <= result.epochs_run


def test_cancel_marks_the_run_killed(tiny_dataset):
    hooks = Recorder(stop_after=1)
    with pytest.raises(TrainingCancelled):
        train(make_spec(tiny_dataset.id, "classification", "label", **{"training.epochs": 500}), hooks=hooks)
    assert tracking.get_run(hooks.started[0]).status == "KILLED"


def test_crash_marks_the_run_failed_with_reason(tiny_dataset):
    class Exploding(Recorder):
        def on_progress(self, progress):
            raise RuntimeError("disk on fire")

    hooks = Exploding()
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(make_spec(tiny_dataset.id, "classification", "label"), hooks=hooks)
    run = tracking.get_run(hooks.started[0])
    assert run.status == "FAILED"
    assert "disk on fire" in run.tags[tracking.TAG_FAILURE]


@pytest.mark.parametrize(
    ("task", "target", "message"),
    [
        ("classification", "missing_col", "target column 'missing_col' is not in the data set"),
        ("regression", "colour", "Regression needs numbers in 'colour'"),
    ],
)
def test_user_errors_are_plain_and_start_no_run(tiny_dataset, task, target, message):
    with pytest.raises(TrainingError, match=message):
        train(make_spec(tiny_dataset.id, task, target))
    assert tracking.list_runs(tiny_dataset.id) == []


def test_cuda_request_without_gpu_is_a_plain_error(tiny_dataset):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TrainingError, match="no GPU is available here"):
        train(make_spec(tiny_dataset.id, "classification", "label", **{"training.device": "cuda"}))


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "plateau"])
def test_learning_rate_schedules_are_stepped(tiny_dataset, schedule):
    changes = {"scheduler.name": schedule, "training.epochs": 6}
    if schedule == "plateau":
        # A learning rate far too high and a patience of one epoch: validation stalls, the rate must drop.
        changes.update(
            {"scheduler.plateau_patience": 1, "optimizer.learning_rate": 5.0, "optimizer.name": "sgd"}
        )
    result = train(make_spec(tiny_dataset.id, "classification", "label", **changes))
    rates = [v for _, v in tracking.metric_history(result.run_id, ["learning_rate"])["learning_rate"]]
    assert len(rates) == 6
    if schedule == "cosine":
        assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0] / 2
    elif schedule == "onecycle":
        peak = rates.index(max(rates))
        assert 0 < peak < 5 and rates[-1] < max(rates) / 10
        assert result.test_metrics["test/accuracy"] > 0.6  # it trains (one onecycle run checks both)
    else:
        assert min(rates) < rates[0]
