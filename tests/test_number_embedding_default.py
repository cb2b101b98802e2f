"""The table network's number embedding starts from the data (issue 20): periodic where a number input has
a long right tail like money or counts, none where the inputs are standardised or roughly symmetric. The
rule on named examples, the Data page's words, the CLI's spec and the Train form (AppTest) showing the
same choice with its reason; a choice the user makes is kept. Nothing trains here."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio.app.table_form import TableForm
from studio.core.spec import RunSpec
from studio.modalities.tabular.profile import (
    column_readings,
    long_tailed,
    number_embedding_default,
    profile_table,
)

KEY = "train__arch_mlp__numeric_embedding"
FEATURES = "train__data__features"
ROWS = 200


def _money_table(rows: int = ROWS) -> pd.DataFrame:
    """Lot sizes and incomes (log-normal: a long right tail), a symmetric age and a yes/no target."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "lot_area": np.round(rng.lognormal(9, 1.2, rows)),
            "income": np.round(rng.lognormal(10, 1.0, rows), 2),
            "age": rng.normal(40, 8, rows).round(1),
            "bought": rng.choice(["yes", "no"], rows),
        }
    )


def _standardised_table(rows: int = ROWS) -> pd.DataFrame:
    """Inputs centred and scaled (negative values, as scikit-learn's diabetes sample), a skewed target."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"s{i}": rng.normal(0, 0.05, rows).round(4) for i in range(4)})
    frame["target"] = np.round(rng.lognormal(5, 0.8, rows))
    return frame


def test_long_tails_are_money_and_counts_not_standardised_or_symmetric_numbers() -> None:
    rng = np.random.default_rng(2)
    assert long_tailed(rng.lognormal(9, 0.9, 500))  # lot sizes: skewness about 3, about 0 on the log scale
    assert long_tailed(rng.poisson(0.3, 500) * rng.lognormal(6, 1, 500))  # mostly 0, then large
    assert not long_tailed(rng.normal(0, 1, 500))  # standardised: negative values
    assert not long_tailed(rng.normal(40, 8, 500))  # ages: roughly symmetric
    assert not long_tailed(rng.uniform(0, 1000, 500))
    assert not long_tailed(rng.lognormal(9, 0.9, 10))  # too few values to tell


def test_a_table_of_money_starts_periodic_a_standardised_one_none() -> None:
    money = profile_table(_money_table())
    choice, reason = number_embedding_default(money, "bought")
    assert choice == "periodic"
    assert (
        reason
        == "periodic: 2 number inputs have a long right tail, like money or counts ('lot_area', 'income')"
    )
    # the target is not an input: a regression of the income reads one long-tailed input
    assert number_embedding_default(money, "income")[1].endswith(
        "1 number input has a long right tail, like money or counts ('lot_area')"
    )
    # only the chosen feature columns count
    assert number_embedding_default(money, "bought", ["age", "income"])[1].startswith(
        "periodic: 1 number input has"
    )
    assert number_embedding_default(money, "bought", ["age"]) == (
        "none",
        "none: no number input has a long right tail (like money or counts)",
    )
    standardised = profile_table(_standardised_table())
    # the long-tailed column is the target only: the inputs are standardised
    assert number_embedding_default(standardised, "target")[0] == "none"
    assert number_embedding_default(standardised, "s0")[0] == "periodic"  # 'target' is then an input


def test_the_data_page_says_so_for_the_suggested_target() -> None:
    money = profile_table(_money_table())
    said = [r["message"] for r in column_readings(money, "bought", "classification") if not r["column"]]
    assert len(said) == 1 and "periodic number embedding (2 number inputs have a long right tail" in said[0]
    assert not [
        r
        for r in column_readings(profile_table(_standardised_table()), "target", "regression")
        if not r["column"]
    ]


def test_an_old_profile_without_the_long_tail_flag_counts_its_log_scale_columns() -> None:
    money = profile_table(_money_table())
    for column in money["columns"]:
        column.pop("long_tail", None)
        column["log_scale"] = column["name"] == "income"
    assert number_embedding_default(money, "bought")[1].endswith("('income')")


def test_the_form_starts_with_the_rule_s_choice() -> None:
    money = profile_table(_money_table())
    assert TableForm().target_defaults(money, "bought") == {
        "architecture.params.numeric_embedding": number_embedding_default(money, "bought")
    }


def _cli_spec(*argv: str) -> RunSpec:
    from studio.cli.spec import add_train_options, spec_from_args

    parser = argparse.ArgumentParser()
    add_train_options(parser)
    return spec_from_args(parser.parse_args(list(argv)))


@pytest.fixture
def files(studio_home, tmp_path):
    money, standardised = tmp_path / "money.csv", tmp_path / "standardised.csv"
    _money_table().to_csv(money, index=False)
    _standardised_table().to_csv(standardised, index=False)
    return str(money), str(standardised)


def test_the_cli_trains_what_the_form_shows_and_keeps_an_explicit_choice(files, tmp_path) -> None:
    money, standardised = files
    assert (
        _cli_spec("--data", money, "--target", "bought").architecture.params["numeric_embedding"]
        == "periodic"
    )
    assert (
        _cli_spec("--data", standardised, "--target", "target").architecture.params["numeric_embedding"]
        == "none"
    )
    kept = _cli_spec(
        "--data", money, "--target", "bought", "--set", "architecture.params.numeric_embedding=none"
    )
    assert kept.architecture.params["numeric_embedding"] == "none"
    asked = _cli_spec(
        "--data",
        standardised,
        "--target",
        "target",
        "--set",
        "architecture.params.numeric_embedding=periodic",
    )
    assert asked.architecture.params["numeric_embedding"] == "periodic"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("architecture:\n  name: mlp\n  params:\n    numeric_embedding: none\n")
    from_file = _cli_spec("--spec", str(spec_file), "--data", money, "--target", "bought")
    assert from_file.architecture.params["numeric_embedding"] == "none"
    # only the chosen features count, as on the form
    only_age = _cli_spec("--data", money, "--target", "bought", "--set", "data.features=[age]")
    assert only_age.architecture.params["numeric_embedding"] == "none"


def test_the_train_form_shows_the_choice_and_its_reason_and_keeps_the_user_s(files, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from studio import data as datasets
    from studio.core.text import as_text
    from studio.data import add_data_file

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    money, standardised = files
    first = add_data_file(Path(standardised))
    second = add_data_file(Path(money))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="train_dataset").set_value(second.id).run()
    if at.selectbox(key="train_target").value != "bought":
        at.selectbox(key="train_target").set_value("bought").run()
    assert at.selectbox(key=KEY).value == "periodic"
    reason = number_embedding_default(datasets.load_profile(second.id), "bought")[1]
    assert reason.startswith("periodic: 2 number inputs")
    assert [c.value for c in at.caption if "For this data" in c.value] == [
        as_text(f"For this data: {reason}.")
    ]
    at.selectbox(key=KEY).set_value("none").run()  # the user's choice survives a rerun
    at.number_input(key="train__training__epochs").set_value(3).run()
    assert at.selectbox(key=KEY).value == "none" and not at.exception
    # other feature columns: the choice starts again from them, as the CLI counts only those
    at.multiselect(key=FEATURES).set_value(["age"]).run()
    assert at.selectbox(key=KEY).value == "none" and not at.exception
    assert [c.value for c in at.caption if "For this data" in c.value] == [
        as_text("For this data: none: no number input has a long right tail (like money or counts).")
    ]
    at.multiselect(key=FEATURES).set_value(["age", "income"]).run()
    assert at.selectbox(key=KEY).value == "periodic"
    assert [c.value for c in at.caption if "For this data" in c.value] == [
        as_text("For this data: periodic: 1 number input has a long right tail, like money or counts ('income').")
    ]
    at.selectbox(key="train_dataset").set_value(first.id).run()
    if at.selectbox(key="train_target").value != "target":
        at.selectbox(key="train_target").set_value("target").run()
    assert at.selectbox(key=KEY).value == "none"
    none_reason = number_embedding_default(datasets.load_profile(first.id), "target")[1]
    assert [c.value for c in at.caption if "For this data" in c.value] == [
        as_text(f"For this data: {none_reason}.")
    ]
