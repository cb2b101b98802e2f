"""The chart functions: data in, Plotly figure out, without Streamlit or MLflow."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from studio.app import charts

# 3 epochs of 4 steps: train/loss every 2 steps, validation (and ``epoch``) at each epoch's last step.
HISTORY = {
    "train/loss": [(2, 0.9), (4, 0.8), (6, 0.7), (8, 0.6), (10, 0.5), (12, 0.4)],
    "val/loss": [(4, 0.85), (8, 0.65), (12, 0.55)],
    "train/accuracy": [(4, 0.6), (8, 0.7), (12, 0.8)],
    "val/accuracy": [(4, 0.55), (8, 0.72), (12, 0.75)],
    "epoch": [(4, 1.0), (8, 2.0), (12, 3.0)],
}


def _annotations(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def _trace(fig: go.Figure, name: str, xaxis: str) -> go.Scatter:
    (trace,) = [t for t in fig.data if t.name == name and t.xaxis == xaxis]
    return trace


def test_training_curves_put_loss_and_accuracy_side_by_side_against_epochs() -> None:
    fig = charts.training_curves(HISTORY, "classification")

    assert sorted((t.name, t.xaxis) for t in fig.data) == [
        ("training", "x"),
        ("training", "x2"),
        ("validation", "x"),
        ("validation", "x2"),
    ]
    train_loss = _trace(fig, "training", "x")
    assert list(train_loss.x) == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])  # steps / 4 steps per epoch
    assert list(train_loss.y) == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    val_acc = _trace(fig, "validation", "x2")
    assert list(val_acc.x) == [1.0, 2.0, 3.0] and list(val_acc.y) == [0.55, 0.72, 0.75]
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.xaxis2.title.text == "epoch"
    assert fig.layout.yaxis.title.text == "loss" and fig.layout.yaxis2.title.text == "accuracy"
    assert any("Loss" in text for text in _annotations(fig))  # subplot titles
    # One legend entry per split, not one per panel.
    assert sorted(t.name for t in fig.data if t.showlegend) == ["training", "validation"]


def test_training_curves_for_regression_show_r2_and_use_the_given_steps_per_epoch() -> None:
    history = {"train/loss": [(5, 2.0), (10, 1.0)], "val/loss": [(10, 1.5)], "val/r2": [(10, 0.3)]}

    fig = charts.training_curves(history, "regression", steps_per_epoch=10)

    assert list(_trace(fig, "training", "x").x) == [0.5, 1.0]
    assert list(_trace(fig, "validation", "x2").y) == [0.3]
    assert fig.layout.yaxis2.title.text == "R²"


def test_without_epochs_the_x_axis_is_the_training_step() -> None:
    fig = charts.training_curves({"train/loss": [(1, 1.0), (2, 0.5)]}, "classification")

    assert list(fig.data[0].x) == [1.0, 2.0]
    assert fig.layout.xaxis.title.text == "training step"


@pytest.mark.parametrize(
    "history", [{}, {"train/loss": []}, {"epoch": [(4, 1.0)]}, {"val/loss": [(4, float("nan"))]}]
)
def test_empty_histories_give_a_blank_figure_that_says_no_data_yet(history: dict) -> None:
    fig = charts.training_curves(history, "classification")

    assert len(fig.data) == 0
    assert any(charts.NO_DATA in text for text in _annotations(fig))


def test_compare_curves_overlay_one_metric_of_several_runs() -> None:
    other = {"val/accuracy": [(3, 0.6), (6, 0.9)], "epoch": [(3, 1.0), (6, 2.0)]}

    fig = charts.compare_curves({"run A": HISTORY, "run B": other, "run C": {}}, "val/accuracy")

    assert [t.name for t in fig.data] == ["run A", "run B"]
    assert list(fig.data[1].x) == [1.0, 2.0] and list(fig.data[1].y) == [0.6, 0.9]
    assert fig.data[0].line.color != fig.data[1].line.color
    assert fig.layout.xaxis.title.text == "epoch"
    assert fig.layout.yaxis.title.text == "accuracy"
    assert fig.layout.title.text == "Validation accuracy"


def test_compare_curves_without_the_metric_say_so() -> None:
    fig = charts.compare_curves({"run A": {"val/loss": [(1, 1.0)]}}, "val/r2")

    assert len(fig.data) == 0
    assert "validation R²" in _annotations(fig)[0]
    assert len(charts.compare_curves({}, "val/loss").data) == 0


def test_parallel_coordinates_encode_categories_with_tick_labels_and_end_at_the_metric() -> None:
    rows = pd.DataFrame(
        {
            "optimizer.learning_rate": [0.001, 0.01, 0.1],
            "optimizer.name": ["adamw", "sgd", "adamw"],
            "val/accuracy": [0.8, 0.9, 0.7],
        }
    )

    fig = charts.parallel_coordinates(
        rows,
        ["optimizer.learning_rate", "optimizer.name"],
        "val/accuracy",
        labels={"optimizer.name": "Optimiser"},
    )

    (trace,) = fig.data
    assert isinstance(trace, go.Parcoords)
    lr, optimiser, metric = trace.dimensions
    assert list(lr.values) == [0.001, 0.01, 0.1] and lr.label == "optimizer.learning_rate"
    assert optimiser.label == "Optimiser"
    assert list(optimiser.ticktext) == ["adamw", "sgd"] and list(optimiser.values) == [0, 1, 0]
    assert metric.label == "validation accuracy" and list(metric.values) == [0.8, 0.9, 0.7]
    assert list(trace.line.color) == [0.8, 0.9, 0.7]


def test_parallel_coordinates_skip_runs_without_the_metric_and_handle_empty_input() -> None:
    rows = pd.DataFrame({"training.epochs": [3, 5], "val/r2": [0.5, None]})

    fig = charts.parallel_coordinates(rows, ["training.epochs", "missing.param"], "val/r2")
    assert [list(d.values) for d in fig.data[0].dimensions] == [[3.0], [0.5]]

    for empty in (pd.DataFrame(), pd.DataFrame({"val/r2": [None]}), rows.drop(columns=["val/r2"])):
        blank = charts.parallel_coordinates(empty, ["training.epochs"], "val/r2")
        assert len(blank.data) == 0 and charts.NO_DATA in _annotations(blank)[0]


def test_metric_labels_are_words() -> None:
    assert charts.metric_label("val/f1_macro") == "validation F1 score (macro)"
    assert charts.metric_label("train/loss") == "training loss"
    assert charts.metric_label("test/rmse") == "test root mean squared error"
    assert charts.metric_name("val/r2") == "R²"


def test_confusion_matrix_figure_counts_in_cells_row_shares_as_colour() -> None:
    fig = charts.confusion_matrix_figure(["cat", "dog"], [[8, 2], [0, 5]])

    (heatmap,) = fig.data
    assert list(heatmap.x) == ["cat", "dog"] and list(heatmap.y) == ["cat", "dog"]
    assert [list(row) for row in heatmap.text] == [["8", "2"], ["0", "5"]]
    assert [list(row) for row in heatmap.z] == [[0.8, 0.2], [0.0, 1.0]]
    assert heatmap.customdata[0][1] == "2 of 10 'cat' pictures (20%) were taken for 'dog'"
    assert heatmap.customdata[1][1] == "5 of 5 'dog' pictures (100%) were recognised"
    assert fig.layout.xaxis.title.text == "predicted class" and fig.layout.yaxis.title.text == "true class"


def test_confusion_matrix_figure_without_scores_says_so() -> None:
    for classes, counts in (([], []), (["a", "b"], [[0, 0], [0, 0]])):
        fig = charts.confusion_matrix_figure(classes, counts)
        assert not fig.data and "No test pictures" in _annotations(fig)[0]


def test_class_counts_figure_has_one_bar_per_class() -> None:
    fig = charts.class_counts_figure(["red", "blue"], [12, 3])

    (bar,) = fig.data
    assert list(bar.y) == ["red", "blue"] and list(bar.x) == [12, 3] and list(bar.text) == ["12", "3"]
    assert not charts.class_counts_figure([], []).data
