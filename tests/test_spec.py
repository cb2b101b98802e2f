"""The run spec: defaults, round trips, and messages that name the field and say what is allowed."""

import pytest

from studio.core.errors import SpecError
from studio.core.spec import ARCHITECTURES, PRESETS, RunSpec, apply_preset, flatten

BASE = {"task": "classification", "data": {"dataset_id": "iris-1", "target": "species"}}


def spec(**sections):
    data = {**BASE, **sections}
    return RunSpec.from_dict(data)


def error_for(data) -> str:
    with pytest.raises(SpecError) as info:
        RunSpec.from_dict(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_complete_and_round_trip_through_json_and_yaml():
    original = spec(
        name="first try", training={"epochs": 7}, architecture={"name": "mlp", "params": {"width": 64}}
    )
    assert original.architecture.params["hidden_layers"] == 2  # defaults filled in
    assert RunSpec.from_json(original.to_json()) == original
    assert RunSpec.from_yaml(original.to_yaml()) == original
    assert "training:\n  batch_size" in original.to_yaml()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"task": "clasification"},
            "task must be one of 'classification', 'regression', 'text_classification', 'text_regression' or 'llm_finetune' (got 'clasification')",
        ),
        ({"training": {"batch_size": -1}}, "training.batch_size must be at least 0 (got -1)"),
        ({"training": {"epochs": "many"}}, "training.epochs must be a whole number"),
        ({"training": {"device": "gpu"}}, "training.device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (
            {"training": {"precision": "8"}},
            "training.precision must be one of '32', '16-mixed' or 'bf16-mixed'",
        ),
        ({"optimizer": {"learning_rate": 0}}, "optimizer.learning_rate must be more than 0.0"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name must be one of 'adamw', 'adam' or 'sgd'"),
        ({"scheduler": {"name": "step"}}, "scheduler.name must be one of"),
        (
            {"architecture": {"name": "transformer"}},
            "unknown architecture 'transformer'; choose one of: mlp, linear",
        ),
        (
            {"architecture": {"name": "mlp", "params": {"width": 2}}},
            "params.width must be at least 4 (got 2)",
        ),
        ({"architecture": {"name": "mlp", "params": {"depth": 2}}}, "params.depth is not a known setting"),
        ({"trainig": {}}, "trainig is not a known setting"),
        (
            {"early_stopping": {"metric": "val/r2"}},
            "does not fit classification; choose one of: val/loss, val/accuracy",
        ),
    ],
)
def test_invalid_values_name_the_field_and_what_is_allowed(change, expected):
    assert expected in error_for({**BASE, **change})


def test_missing_and_cross_field_errors():
    assert "data is required" in error_for({"task": "regression"})
    message = error_for(
        {**BASE, "data": {"dataset_id": "x", "target": "y", "val_fraction": 0.4, "test_fraction": 0.4}}
    )
    assert (
        "data: the validation share and the test share together must be at most 0.6 (they are 0.8)" in message
    )
    message = error_for({**BASE, "data": {"dataset_id": "x", "target": "y", "features": ["a", "y"]}})
    assert "must not contain the target column 'y'" in message


def test_the_cli_message_names_the_setting_by_its_path_without_saying_invalid_spec():
    message = error_for({**BASE, "optimizer": {"learning_rate": -1}})
    assert (
        message == "These settings are not allowed: optimizer.learning_rate must be more than 0.0 (got -1)."
    )


def test_bad_json_and_yaml_are_one_plain_sentence():
    with pytest.raises(SpecError, match="not valid JSON"):
        RunSpec.from_json("{oops")
    with pytest.raises(SpecError, match="not valid YAML"):
        RunSpec.from_yaml("task: [unclosed")
    with pytest.raises(SpecError, match="'name: value' pairs"):
        RunSpec.from_yaml("- just\n- a list\n")


def test_presets_and_dotted_changes():
    base = spec()
    fast = apply_preset(base, "fast")
    assert (
        fast.training.epochs
        == PRESETS["fast"]["training.epochs"]
        < apply_preset(base, "thorough").training.epochs
    )
    with pytest.raises(SpecError, match="Unknown preset 'turbo'"):
        apply_preset(base, "turbo")
    assert base.with_changes(**{"architecture.params.width": 32}).architecture.params["width"] == 32
    with pytest.raises(SpecError, match="training.epochs must be at least 1"):
        base.with_changes(**{"training.epochs": 0})


def test_flatten_gives_mlflow_params():
    flat = flatten(spec(data={"dataset_id": "d", "target": "t", "features": ["a", "b"]}))
    assert flat["data.features"] == "a,b"
    assert flat["architecture.params.width"] == "128"
    assert flat["optimizer.learning_rate"] == "0.001"


def test_every_field_has_a_title_and_help_text():
    from pydantic import BaseModel

    def walk(model: type[BaseModel]):
        for name, field in model.model_fields.items():
            assert field.title and field.description, f"{model.__name__}.{name} lacks UI text"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation)

    for section in ("preprocessing", "optimizer", "scheduler", "early_stopping", "training"):
        walk(RunSpec.model_fields[section].annotation)
    for info in ARCHITECTURES.values():
        walk(info.params_model)


def test_a_regression_watches_its_error_in_its_own_units_unless_told_otherwise():
    regression = {"task": "regression", "data": {"dataset_id": "houses-1", "target": "price"}}
    assert RunSpec.from_dict(regression).early_stopping.metric == "val/rmse"
    assert spec().early_stopping.metric == "val/loss"  # classification keeps its loss
    patient = RunSpec.from_dict({**regression, "early_stopping": {"patience": 3}})
    assert (patient.early_stopping.metric, patient.early_stopping.patience) == ("val/rmse", 3)
    chosen = RunSpec.from_dict({**regression, "early_stopping": {"metric": "val/loss"}})
    assert chosen.early_stopping.metric == "val/loss"
    assert RunSpec.from_json(chosen.to_json()) == chosen
