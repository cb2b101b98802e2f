"""Names and IDs: left out of a model's inputs unless listed, and refused as a classification target
before any run starts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studio.core.errors import TrainingError
from studio.core.spec import RunSpec
from studio.data import profile_table
from studio.data.samples import sample_table
from studio.modalities.tabular.prepare import plan_features, table_data_module

LEFT_OUT = "it has a different value in almost every row (50 of 60), like a name or an ID"


def cars(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    horsepower = rng.normal(100, 30, n).round(0)
    return pd.DataFrame(
        {
            "Name": [f"make {i % 50} model" for i in range(n)],
            "Miles_per_Gallon": (60 - horsepower / 4 + rng.normal(0, 2, n)).round(1),
            "Horsepower": horsepower,
            "Origin": rng.choice(["USA", "Europe", "Japan"], n),
        }
    )


def spec(target: str, task: str, features: list[str] | None = None) -> RunSpec:
    return RunSpec(task=task, data={"dataset_id": "cars", "target": target, "features": features})


def test_a_name_column_is_left_out_of_the_inputs_with_the_reason() -> None:
    frame = cars()
    data = table_data_module(frame, profile_table(frame), spec("Miles_per_Gallon", "regression"))
    assert data.plan.ignored == {"Name": LEFT_OUT}
    assert (data.plan.numeric, data.plan.categorical) == (["Horsepower"], ["Origin"])
    assert "Name" not in data.preprocessor.input_columns


def test_a_name_column_listed_under_feature_columns_is_used() -> None:
    frame = cars()
    wanted = spec("Miles_per_Gallon", "regression", ["Name", "Horsepower"])
    data = table_data_module(frame, profile_table(frame), wanted)
    assert data.plan.categorical == ["Name"] and data.plan.ignored == {}


def test_a_profile_stored_before_names_were_identifiers_still_leaves_the_name_out() -> None:
    frame = cars()
    profile = profile_table(frame)
    for column in profile["columns"]:
        if column["name"] == "Name":
            column["kind"] = "categorical"
    profile["warnings"] = [w for w in profile["warnings"] if w["code"] != "identifier"]
    assert plan_features(frame, profile, spec("Miles_per_Gallon", "regression")).ignored == {"Name": LEFT_OUT}


def test_a_name_column_is_refused_as_a_classification_target_before_a_run_starts(
    studio_home, tmp_path, monkeypatch
) -> None:
    from studio import tracking
    from studio.data import add_csv
    from studio.engine.training import train

    frame = cars()
    with pytest.raises(TrainingError) as refused:
        table_data_module(frame, profile_table(frame), spec("Name", "classification"))
    assert str(refused.value) == (
        "'Name' has a different value in almost every row (50 of 60), like a name or an ID, so it cannot be "
        "predicted as a category: most of its values appear in one row only, and a model cannot learn a "
        "class from one example. Pick another target column."
    )

    path = tmp_path / "cars.csv"
    frame.to_csv(path, index=False)
    dataset = add_csv(path)
    monkeypatch.setattr(tracking, "start_run", lambda *a, **k: pytest.fail("a run was started"))
    with pytest.raises(TrainingError, match="cannot be predicted as a category"):
        train(spec("Name", "classification").with_changes(**{"data.dataset_id": dataset.id}))


@pytest.mark.parametrize("sample", ["wine", "breast_cancer", "diabetes"])
def test_the_samples_keep_every_column_as_an_input(sample: str) -> None:
    frame = sample_table(sample)
    profile = profile_table(frame)
    target = profile["suggested_target"]
    plan = plan_features(
        frame, profile, RunSpec(task=profile["suggested_task"], data={"dataset_id": sample, "target": target})
    )
    assert plan.ignored == {}
    assert len(plan.numeric) + len(plan.categorical) == len(frame.columns) - 1
    assert not [w for w in profile["warnings"] if w["code"] in ("identifier", "free_text")]
