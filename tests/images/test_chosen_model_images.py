"""A picture run trained without its test (a search's trial), tested once afterwards. Real training."""

from __future__ import annotations

import pytest

from studio.bundle import read_bundle_info
from studio.engine.training import evaluate_chosen_model, train
from tests.training.test_chosen_model import ValidationOnly


def test_a_picture_run_tested_afterwards_gets_its_confusion_matrix(shapes_dataset, tmp_path) -> None:
    from studio.app import images_view
    from studio.core.spec import RunSpec

    spec = RunSpec.from_dict(
        {"task": "image_classification", "data": {"dataset_id": shapes_dataset.id}, "training": {"epochs": 2}}
    )
    bundle = tmp_path / "trial.zip"
    trial = train(spec, hooks=ValidationOnly(), bundle_out=bundle)
    assert trial.test_metrics == {} and images_view.confusion_matrix(trial.run_id) is None

    tested = evaluate_chosen_model(spec, bundle, trial.run_id).test_metrics

    assert 0.0 <= tested["test/accuracy"] <= 1.0
    matrix = images_view.confusion_matrix(trial.run_id)
    assert matrix is not None and sum(map(sum, matrix.counts)) == 9
    assert read_bundle_info(bundle)["metrics"]["test/accuracy"] == pytest.approx(tested["test/accuracy"])
