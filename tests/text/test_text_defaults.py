"""The text tasks' own defaults: text networks overfit within a few epochs, so they stop sooner."""

from __future__ import annotations

from studio.app import forms
from studio.core.spec import RunSpec


def _spec(task: str, **sections) -> RunSpec:
    return RunSpec.from_dict({"task": task, "data": {"dataset_id": "d", "target": "y"}, **sections})


def test_text_tasks_stop_after_five_epochs_without_improvement_and_tables_keep_fifteen() -> None:
    for task in ("text_classification", "text_regression"):
        spec = _spec(task)
        assert (spec.early_stopping.patience, spec.scheduler.plateau_patience) == (5, 2)
        # the bag of words' own rate and pooling (sum / √words with 0.002: measured ahead of the average
        # with 0.005 on the validation loss of both sets of bench/text_quality.py, README)
        assert spec.optimizer.learning_rate == 0.002
        assert spec.architecture.params["pooling"] == "sqrt"
    given = _spec("text_classification", early_stopping={"patience": 12}, scheduler={"name": "cosine"})
    assert given.early_stopping.patience == 12 and given.scheduler.name == "cosine"
    assert given.scheduler.plateau_patience == 2
    table = _spec("classification")
    assert (table.early_stopping.patience, table.scheduler.plateau_patience) == (15, 5)


def test_the_form_shows_the_text_defaults() -> None:
    fields = {f.path: f for f in forms.form_fields("bag_of_words", task="text_classification")}
    assert fields["early_stopping.patience"].default == 5
    assert fields["scheduler.plateau_patience"].default == 2
    assert fields["optimizer.learning_rate"].default == 0.002
    assert fields["architecture.params.pooling"].default == "sqrt"
    tables = {f.path: f for f in forms.form_fields("mlp", task="classification")}
    assert tables["early_stopping.patience"].default == 15
