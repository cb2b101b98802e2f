"""Pure functions from run data to Plotly figures (no Streamlit, no MLflow).

A *history* is what :func:`studio.tracking.metric_history` returns: ``metric -> [(step, value), ...]``.
Curves are drawn against epochs: validation points carry an ``epoch`` metric logged at the same step,
and per-step points (``train/loss``) become fractional epochs (``step / steps_per_epoch``).
Empty input never raises: it gives a figure with a "no data yet" note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.core.quality import SPLIT_WORDS, metric_label, metric_name
from studio.core.text import as_plot_text

History = Mapping[str, Sequence[tuple[int, float]]]

NO_DATA = "No data yet"
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def sentence(text: str) -> str:
    """First letter upper case, the rest untouched (``str.capitalize`` would turn AUROC into Auroc)."""
    return text[:1].upper() + text[1:]


def empty_figure(message: str = NO_DATA, height: int = 320) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin={"l": 20, "r": 20, "t": 30, "b": 20})
    return fig


def _finite(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(s, v) for s, v in points if v is not None and math.isfinite(v)]


def epoch_mapper(
    history: History, steps_per_epoch: int | float | None = None
) -> Callable[[int], float] | None:
    """A function from MLflow step to (fractional) epoch, or None when the history cannot tell.

    Steps where ``epoch`` was logged map to that epoch exactly; other steps are divided by the steps
    per epoch (given, or read off the ``epoch`` points)."""
    epoch_points = {step: value for step, value in _finite(history.get("epoch", ())) if value > 0}
    per_epoch = float(steps_per_epoch) if steps_per_epoch else None
    if not per_epoch and epoch_points:
        first_step, first_epoch = min(epoch_points.items())
        per_epoch = first_step / first_epoch if first_step > 0 else None
    if not per_epoch and not epoch_points:
        return None

    def to_epoch(step: int) -> float:
        if step in epoch_points:
            return epoch_points[step]
        return step / per_epoch if per_epoch else float(step)

    return to_epoch


def curve_points(
    history: History, metric: str, steps_per_epoch: int | float | None = None
) -> tuple[list[float], list[float]]:
    """``(x, y)`` of one metric, x in epochs when the history allows it, else in steps."""
    points = _finite(history.get(metric, ()))
    to_epoch = epoch_mapper(history, steps_per_epoch) or float
    return [to_epoch(step) for step, _ in points], [value for _, value in points]


def _x_title(history: History, steps_per_epoch: int | float | None) -> str:
    return "epoch" if epoch_mapper(history, steps_per_epoch) else "training step"


def training_curves(
    history: History, task: str, steps_per_epoch: int | float | None = None, height: int = 380
) -> go.Figure:
    """Two panels side by side: loss (training and validation) and the task's main metric.

    Classification shows accuracy (training and validation), regression R² (validation), a task with
    metrics of its own its main one (fine-tuning: perplexity).
    """
    from studio.core.spec import main_metric, metric_mode

    main = main_metric(task).split("/", 1)[1]
    better = "higher" if metric_mode(main) == "max" else "lower"
    panels = [
        ("loss", "Loss (lower is better)"),
        (main, f"{sentence(metric_name(main))} ({better} is better)"),
    ]
    if not any(
        _finite(history.get(f"{split}/{name}", ())) for name, _ in panels for split in ("train", "val")
    ):
        return empty_figure(f"{NO_DATA}: the first points appear after a few training steps.", height)

    fig = make_subplots(rows=1, cols=2, subplot_titles=[title for _, title in panels], horizontal_spacing=0.1)
    x_title = _x_title(history, steps_per_epoch)
    for col, (name, _) in enumerate(panels, start=1):
        for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            metric = f"{split}/{name}"
            x, y = curve_points(history, metric, steps_per_epoch)
            if not x:
                continue
            per_step = len(x) > 1 and any(value != round(value) for value in x)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=SPLIT_WORDS[split],
                    legendgroup=split,
                    showlegend=col == 1 or not _has_trace(fig, split),
                    mode="lines" if per_step else "lines+markers",
                    line={"color": color, "width": 1.5 if per_step else 2.5},
                    hovertemplate=f"{metric_label(metric)}: %{{y:.4g}}<br>{x_title} %{{x:.2f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=x_title, row=1, col=col)
        fig.update_yaxes(title_text=metric_name(name), row=1, col=col)
    # Both panels share one epoch axis starting at 0 (training starts there); whole epochs as ticks.
    fig.update_xaxes(matches="x", rangemode="tozero")
    if x_title == "epoch" and max((t.x[-1] for t in fig.data), default=0) <= 12:
        fig.update_xaxes(dtick=1)
    fig.update_layout(
        height=height,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center"},
        hovermode="x unified",
    )
    return fig


def _has_trace(fig: go.Figure, group: str) -> bool:
    return any(trace.legendgroup == group and trace.showlegend for trace in fig.data)


def compare_curves(
    histories: Mapping[str, History],
    metric: str,
    steps_per_epoch: Mapping[str, int | float | None] | None = None,
    height: int = 420,
) -> go.Figure:
    """One metric of several runs overlaid (one line per run, labelled by the mapping's keys)."""
    steps_per_epoch = steps_per_epoch or {}
    fig = go.Figure()
    x_title = "epoch"
    for index, (label, history) in enumerate(histories.items()):
        x, y = curve_points(history, metric, steps_per_epoch.get(label))
        if not x:
            continue
        if epoch_mapper(history, steps_per_epoch.get(label)) is None:
            x_title = "training step"
        per_step = len(x) > 1 and any(value != round(value) for value in x)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=as_plot_text(label),
                mode="lines" if per_step else "lines+markers",
                line={"color": PALETTE[index % len(PALETTE)]},
                hovertemplate=f"%{{fullData.name}}<br>%{{y:.4g}} at {x_title} %{{x:.2f}}<extra></extra>",
            )
        )
    if not fig.data:
        return empty_figure(f"{NO_DATA}: none of the chosen runs has logged {metric_label(metric)}.", height)
    if x_title == "epoch" and max(trace.x[-1] for trace in fig.data) <= 12:
        fig.update_xaxes(dtick=1)
    fig.update_layout(
        title=sentence(metric_label(metric)),
        xaxis_title=x_title,
        yaxis_title=metric_name(metric),
        height=height,
        # Room for the tick labels and titles (automargin grows it further), and the legend below the
        # x axis's title rather than on it.
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        legend={"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0.5, "xanchor": "center"},
    )
    fig.update_xaxes(automargin=True, title_standoff=6)
    fig.update_yaxes(automargin=True, title_standoff=6)
    return fig


def _is_numeric(values: Sequence[Any]) -> bool:
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def parallel_coordinates(
    rows: Any,
    params: Sequence[str],
    metric: str,
    labels: Mapping[str, str] | None = None,
    height: int = 420,
) -> go.Figure:
    """One line per run across its hyperparameters, ending at ``metric`` (lines coloured by it).

    ``rows`` is a DataFrame with one row per run and a column per param and for the metric. Numeric
    columns get a numeric axis; other columns are encoded 0..n-1 with their values as tick labels.
    """
    labels = labels or {}
    columns = [p for p in params if p in getattr(rows, "columns", ())]
    if rows is None or len(rows) == 0 or metric not in rows.columns:
        return empty_figure(f"{NO_DATA}: pick runs that have finished to compare their settings.", height)
    frame = rows[[*columns, metric]].copy()
    frame = frame[frame[metric].notna()]
    if frame.empty:
        return empty_figure(f"{NO_DATA}: none of the chosen runs has a {metric_label(metric)} yet.", height)

    dimensions = []
    for column in columns:
        values = frame[column].tolist()
        label = as_plot_text(labels.get(column, column))
        if _is_numeric(values):
            # ".3~g": 0.0001 and 0.262, not Plotly's SI prefixes ("100μ") or 16 digits
            dimensions.append({"label": label, "values": [float(v) for v in values], "tickformat": ".3~g"})
        else:
            texts = [str(v) for v in values]
            categories = sorted(set(texts))
            codes = {text: index for index, text in enumerate(categories)}
            dimensions.append(
                {
                    "label": label,
                    "values": [codes[text] for text in texts],
                    "tickvals": list(range(len(categories))),
                    "ticktext": [as_plot_text(text) for text in categories],
                    "range": [-0.5, len(categories) - 0.5]
                    if len(categories) == 1
                    else [0, len(categories) - 1],
                }
            )
    scores = [float(v) for v in frame[metric]]
    dimensions.append({"label": as_plot_text(labels.get(metric, metric_label(metric))), "values": scores})
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": scores,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": metric_name(metric)}},
            },
            dimensions=dimensions,
        )
    )
    fig.update_layout(height=height, margin={"l": 60, "r": 60, "t": 60, "b": 30})
    return fig


def class_counts_figure(
    classes: Sequence[str], counts: Sequence[float], height: int = 300, unit: str = "pictures"
) -> go.Figure:
    """Pictures per class (or a model's probability of each class, ``unit="probability"``) as horizontal
    bars, in the given order from the top, values at the bars."""
    if not classes:
        return empty_figure("No pictures", height)
    names = [as_plot_text(c) for c in classes]
    shares = unit == "probability"
    fig = go.Figure(
        go.Bar(
            x=list(counts),
            y=names,
            orientation="h",
            marker={"color": TRAIN_COLOR},
            text=[f"{n:.1%}" if shares else f"{n:,}" for n in counts],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>" if shares else "%{y}: %{x:,} pictures<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="class", type="category")
    fig.update_xaxes(title_text=unit, rangemode="tozero", range=[0, 1] if shares else None)
    fig.update_layout(
        height=min(max(height, 60 + 28 * len(names)), 900), margin={"l": 40, "r": 20, "t": 20, "b": 40}
    )
    return fig


def confusion_matrix_figure(
    classes: Sequence[str], counts: Sequence[Sequence[int]], height: int | None = None
) -> go.Figure:
    """The confusion matrix as a heat map: one row per true class, one column per predicted class.

    Each cell shows its count; the colour is the share of the row (so a small class reads as clearly
    as a big one), and the hover text says it in words. The diagonal holds the right answers.
    """
    names = [as_plot_text(c) for c in classes]
    if not names or not counts or not any(sum(row) for row in counts):
        return empty_figure("No test pictures were scored", height or 320)
    shares = [[value / sum(row) if sum(row) else 0.0 for value in row] for row in counts]
    hover = [
        [
            f"{counts[t][p]:,} of {sum(counts[t]):,} '{names[t]}' pictures ({shares[t][p]:.0%}) "
            + ("were recognised" if t == p else f"were taken for '{names[p]}'")
            for p in range(len(names))
        ]
        for t in range(len(names))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=names,
            y=names,
            text=[[f"{value:,}" for value in row] for row in counts],
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale="Blues",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "share of<br>the row"}, "tickformat": ".0%"},
        )
    )
    side = height or min(max(320, 120 + 44 * len(names)), 900)
    fig.update_xaxes(title_text="predicted class", type="category", side="bottom")
    fig.update_yaxes(title_text="true class", type="category", autorange="reversed")
    fig.update_layout(height=side, margin={"l": 60, "r": 20, "t": 20, "b": 60})
    return fig


def text_lengths_figure(edges: Sequence[int], counts: Sequence[int], height: int = 260) -> go.Figure:
    """How many texts have how many words: one bar per range of word counts."""
    if not counts:
        return empty_figure("No texts", height)
    labels = [
        str(low) if high - low <= 1 else f"{low}–{high - 1}" for low, high in zip(edges[:-1], edges[1:], strict=True)
    ]
    while len(counts) > 1 and not counts[0]:  # no empty bars before the shortest text
        labels, counts = labels[1:], counts[1:]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=list(counts),
            marker={"color": TRAIN_COLOR},
            hovertemplate="%{x} words: %{y:,} texts<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="words per text", type="category")
    fig.update_yaxes(title_text="texts", rangemode="tozero")
    fig.update_layout(height=height, margin={"l": 40, "r": 20, "t": 20, "b": 40})
    return fig
