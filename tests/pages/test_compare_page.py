"""The Compare page with two real tiny runs, and the compare table's best-value marking on its own."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.app import runs_view as rv
from studio.tracking import RunSummary
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process, spec, tiny_dataset

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "compare.py")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory):
    """Two real tiny trainings of one data set with different optimisers (shared by this module)."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{root}/mlruns"))
        patch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
        dataset_id = tiny_dataset(root)
        first = run_in_process(spec(dataset_id, "adam run"))
        second = run_in_process(
            spec(
                dataset_id,
                "sgd run",
                optimizer={"name": "sgd", "learning_rate": 0.05},
                training={"epochs": 3},
            )
        )
        assert first.state == second.state == jobs.SUCCEEDED, (first.reason, second.reason)
        yield first, second


def display_values(at: AppTest, index: int = 0):
    """The table as shown (the Styler's formatted cells)."""
    styler = at.dataframe[index].proto.arrow_data.styler
    return pa.ipc.open_stream(styler.display_values).read_pandas()


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_two_runs_side_by_side_with_best_values_marked(two_runs, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = two_runs
    monkeypatch.setenv("STUDIO_MLFLOW_UI_URL", "http://127.0.0.1:5999/")

    at = AppTest.from_file(PAGE, default_timeout=60).run()

    assert not at.exception and not at.error
    assert at.multiselect[0].value == [second.mlflow_run_id, first.mlflow_run_id]  # newest first
    table = at.dataframe[0].value
    assert list(table.index) == ["sgd run", "adam run"]
    assert {"Optimiser", "Learning rate", "Epochs (at most)"} <= set(table.columns)
    shown = display_values(at)
    for column in ("Test accuracy", "Test loss", "Validation loss"):
        values = table[column]
        best = values.idxmin() if column.endswith("loss") else values.idxmax()
        marked = [row for row in shown.index if str(shown.at[row, column]).startswith(rv.BEST_MARK)]
        assert best in marked, (column, list(shown[column]))
        assert len(marked) == 1 or values.nunique() == 1
    assert shown.at["adam run", "Learning rate"] == "0.001"

    curves, parallel = figures(at)
    assert [trace["name"] for trace in curves["data"]] == ["sgd run", "adam run"]
    assert curves["layout"]["xaxis"]["title"]["text"] == "epoch"
    (parcoords,) = parallel["data"]
    labels = [dimension["label"] for dimension in parcoords["dimensions"]]
    assert {"Optimiser", "Learning rate", "Epochs (at most)"} <= set(labels)
    assert labels[-1] == "validation accuracy"
    optimiser = parcoords["dimensions"][labels.index("Optimiser")]
    assert optimiser["ticktext"] == ["AdamW", "SGD"]  # as the Train form names them

    (link,) = at.get("link_button")
    assert link.proto.url.startswith("http://127.0.0.1:5999/#/compare-runs?runs=")
    assert second.mlflow_run_id in link.proto.url

    at.selectbox(key="compare-metric").set_value("train/loss").run()
    assert not at.exception
    assert figures(at)[0]["layout"]["title"]["text"] == "Training loss"

    at.multiselect(key=at.multiselect[0].key).set_value([first.mlflow_run_id]).run()
    assert not at.exception
    assert "at least one more run" in at.info[0].value


def test_without_runs_the_page_says_what_to_do(studio_home: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()

    assert not at.exception
    assert "Nothing to compare yet" in at.info[0].value


def _run(run_id: str, name: str, params: dict, metrics: dict) -> RunSummary:
    return RunSummary(run_id, "1", name, "FINISHED", 0, 0, {"studio.task": "regression"}, params, metrics)


def test_compare_table_marks_highest_or_lowest_by_metric_and_every_tied_run() -> None:
    runs = [
        _run(
            "a1", "A", {"optimizer.name": "adamw", "training.epochs": "5"}, {"test/r2": 0.5, "test/mae": 2.0}
        ),
        _run("b2", "B", {"optimizer.name": "sgd", "training.epochs": "5"}, {"test/r2": 0.7, "test/mae": 2.0}),
        _run("c3", "A", {"optimizer.name": "sgd", "training.epochs": "5"}, {"test/r2": 0.6}),
    ]

    table = rv.compare_table(runs)

    assert list(table.frame.index) == ["A (a1)", "B", "A (c3)"]
    assert table.params == ["Optimiser"]  # epochs are the same everywhere
    assert table.best == {"Test R²": ["B"], "Test mean absolute error": ["A (a1)", "B"]}
    html = table.styled().to_html()
    assert html.count(rv.BEST_MARK) == 3 and "–" in html  # the run without MAE shows a dash


def test_settings_read_as_used_and_one_validation_score_per_run() -> None:
    """An automatic batch size reads as the batch size the run used, a network by its form title, long
    decimals rounded, and the validation score is the kept epoch's, not the last epoch's."""
    first = RunSummary(
        "a1",
        "1",
        "auto batch",
        "FINISHED",
        0,
        0,
        {"studio.task": "classification", "studio.batch_size": "32"},
        {"architecture.name": "linear", "training.batch_size": "0", "model.dropout": "0.2623782158161189"},
        {"test/accuracy": 0.5, "val/accuracy": 0.40, "kept/val_accuracy": 0.55},
    )
    second = RunSummary(
        "b2",
        "1",
        "batch 32",
        "FINISHED",
        0,
        0,
        {"studio.task": "classification", "studio.batch_size": "32"},
        {"architecture.name": "mlp", "training.batch_size": "32", "model.dropout": "0.1"},
        {"test/accuracy": 0.6, "val/accuracy": 0.58},  # a run from before kept/* was logged
    )
    table = rv.compare_table([first, second])

    assert "Batch size" not in table.params  # 0 (automatic) trained with 32: the same as 32
    assert table.frame.at["auto batch", "Architecture"] == "Linear model"
    assert table.frame.at["auto batch", "Validation accuracy"] == 0.55
    assert table.frame.at["batch 32", "Validation accuracy"] == 0.58
    assert list(table.frame["Against a guess"]) == ["–", "–"]  # no guess scored for these runs
    html = table.styled().to_html()
    assert ">0.262<" in html and "0.2623782158161189" not in html


def test_a_setting_only_some_runs_have_converts_to_a_table_the_page_can_show() -> None:
    """A linear model has no hidden layers: the column holds a number for the MLP and nothing for the
    linear model, which must still convert to Arrow (what st.dataframe sends to the browser)."""
    runs = [
        _run(
            "a1",
            "MLP",
            {"architecture.name": "mlp", "architecture.params.hidden_layers": "2"},
            {"test/r2": 0.5},
        ),
        _run("b2", "Linear", {"architecture.name": "linear"}, {"test/r2": 0.4}),
        _run("c3", "Odd", {"architecture.name": "mlp", "architecture.params.hidden_layers": "many"}, {}),
    ]
    frame = rv.compare_table(runs[:2]).frame
    pa.Table.from_pandas(frame)  # raised ArrowTypeError/ArrowInvalid on '' beside a number
    layers = next(c for c in frame.columns if "layer" in c.lower())
    assert frame[layers].tolist()[0] == 2 and pd.isna(frame[layers].tolist()[1])
    mixed = rv.compare_table(runs).frame
    pa.Table.from_pandas(mixed)
    assert mixed[layers].tolist() == ["2", "", "many"]  # text where one value is not a number
