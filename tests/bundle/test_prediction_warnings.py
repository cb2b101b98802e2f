"""``prediction_warning``: rows whose inputs are empty, mostly empty or far outside the training range
are flagged by the runtime a bundle ships (and states written before it kept min/max still load)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from studio.core.runtime import WARNING_COLUMN, TabularNet, TabularPredictor, TabularPreprocessor

TRAINING = pd.DataFrame(
    {
        "Horsepower": [46.0, 90, 150, 230, 120, np.nan],
        "Weight": [1600.0, 2500, 3500, 5100, 3000, 2800],
        "Origin": ["USA", "Japan", "Europe", "USA", None, "Japan"],
        "built": ["2001-01-01", "2002-05-01", "2003-02-01", "2004-03-01", "2005-01-01", "2006-01-01"],
    }
)


def preprocessor() -> TabularPreprocessor:
    return TabularPreprocessor.fit(TRAINING, ["Horsepower", "Weight"], ["Origin"], ["built"])


def test_the_training_range_of_each_number_is_kept() -> None:
    numeric = {c["name"]: (c["min"], c["max"]) for c in preprocessor().state["numeric"]}
    assert numeric == {"Horsepower": (46.0, 230.0), "Weight": (1600.0, 5100.0)}


def test_empty_mostly_empty_and_far_out_rows_are_flagged_and_ordinary_ones_are_not() -> None:
    rows = pd.DataFrame(
        {
            "Horsepower": [None, 95, 900, 400, 150, np.inf, -300],
            "Weight": [None, 2600, 3000, None, 8000, 3000, 3000],
            "Origin": [None, "Japan", "Mars", None, "USA", "USA", "USA"],
            "built": [None, "2004-01-01", "2004-01-01", None, "2030-01-01", "2004-01-01", "2004-01-01"],
        }
    )
    assert preprocessor().row_warnings(rows) == [
        "every input is empty: this is a guess from nothing",
        "",
        "Horsepower 900 is far outside the training range (46 to 230)",
        "3 of 4 inputs are empty: a rough guess",
        "",  # 8000 is beyond the heaviest (5100), but by less than the range (3500)
        "Horsepower inf is far outside the training range (46 to 230)",
        "Horsepower -300 is far outside the training range (46 to 230)",
    ]


def test_absent_columns_count_as_empty_and_many_far_columns_are_summed_up() -> None:
    pre = TabularPreprocessor.fit(
        pd.DataFrame({f"x{i}": [0.0, 1.0] for i in range(5)}), [f"x{i}" for i in range(5)], [], []
    )
    assert pre.row_warnings(pd.DataFrame({"x0": [0.5], "other": [1]})) == [
        "4 of 5 inputs are empty: a rough guess"
    ]
    (far,) = pre.row_warnings(pd.DataFrame({f"x{i}": [10.0] for i in range(5)}))
    assert far.startswith("x0 10 is far outside the training range (0 to 1); x1 10") and far.endswith(
        "and 2 more"
    )


def test_a_state_without_the_training_range_still_flags_empty_rows() -> None:
    state = preprocessor().state
    for column in state["numeric"]:
        del column["min"], column["max"]
    rows = pd.DataFrame({"Horsepower": [None, 900], "Weight": [None, 3000], "Origin": [None, "USA"]})
    assert TabularPreprocessor(state).row_warnings(rows) == [
        "every input is empty: this is a guess from nothing",
        "",
    ]


def test_predictions_carry_the_warning_column_and_it_is_quick() -> None:
    pre = preprocessor()
    net = TabularNet(pre.n_numeric, pre.cardinalities, 3, hidden_layers=1, width=8)
    predictor = TabularPredictor(
        pre.state,
        {"name": "mpg", "task": "classification", "classes": ["a", "b", "c"]},
        dict(net.config),
        net.state_dict(),
    )
    many = pd.concat([TRAINING] * 20_000, ignore_index=True)  # 120,000 rows
    started = time.perf_counter()
    predictions = predictor.predict(many)
    seconds = time.perf_counter() - started
    assert list(predictions.columns)[-1] == WARNING_COLUMN
    assert (predictions[WARNING_COLUMN] == "").all()
    assert seconds < 10
