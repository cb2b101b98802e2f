"""A run trained without its test (a search's trial) leaves the test rows alone; testing the chosen one
afterwards gives the scores a straight run would have had, in MLflow and in its bundle. Real training."""

from __future__ import annotations

import pytest

from studio import tracking
from studio.bundle import load_bundle, read_bundle_info
from studio.engine.training import TrainHooks, evaluate_chosen_model, train
from tests.training.test_train import make_spec


class ValidationOnly(TrainHooks):
    runs_test = False


def test_a_run_without_its_test_then_tested_once_matches_a_straight_run(tiny_dataset, tmp_path) -> None:
    spec = make_spec(tiny_dataset.id, "classification", "label", **{"training.epochs": 4})
    straight = train(spec, bundle_out=tmp_path / "straight.zip")

    bundle = tmp_path / "trial.zip"
    trial = train(spec, hooks=ValidationOnly(), bundle_out=bundle)
    assert trial.test_metrics == {}
    run = tracking.get_run(trial.run_id)
    assert run.status == "FINISHED"
    assert not [key for key in run.metrics if key.startswith("test/")]  # the test rows were not used
    assert "val/accuracy" in run.metrics
    assert read_bundle_info(bundle)["metrics"] == {}
    assert not [key for key in trial.quality if key.startswith("baseline/")]  # no test, no guess scored
    assert trial.quality["kept/epoch"] == trial.best_epoch  # but the kept epoch is known

    chosen = evaluate_chosen_model(spec, bundle, trial.run_id)
    tested = chosen.test_metrics
    assert chosen.quality == {k: v for k, v in straight.quality.items() if k.startswith("baseline/")}
    assert (
        tracking.get_run(trial.run_id).tags[tracking.TAG_VERDICT]
        == (tracking.get_run(straight.run_id).tags[tracking.TAG_VERDICT])
    )

    assert set(tested) == set(straight.test_metrics)
    for key, value in straight.test_metrics.items():  # same seed, same weights, same test rows
        assert tested[key] == pytest.approx(value, abs=1e-6), key
    run = tracking.get_run(trial.run_id)
    assert run.status == "FINISHED"
    assert run.metrics["test/accuracy"] == pytest.approx(tested["test/accuracy"])
    last_step = max(h.step for h in tracking.client().get_metric_history(trial.run_id, "val/accuracy"))
    assert tracking.client().get_metric_history(trial.run_id, "test/accuracy")[0].step >= last_step
    assert read_bundle_info(bundle)["metrics"]["test/accuracy"] == pytest.approx(tested["test/accuracy"])
    with load_bundle(bundle) as model:  # still a whole bundle that predicts
        predictions = model.predict([{"x1": 1.0, "x2": 0.0, "colour": "red", "amount": 120.0, "row_id": 1}])
    assert len(predictions) == 1
    logged = tracking.client().download_artifacts(
        trial.run_id, tracking.BUNDLE_ARTIFACT, str(tmp_path / "dl")
    )
    assert read_bundle_info(logged)["metrics"]["test/accuracy"] == pytest.approx(tested["test/accuracy"])
