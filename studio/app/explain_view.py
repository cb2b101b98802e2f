"""The pages' parts for explanations and small versions: start the job (never the work itself), follow
it while it runs (cancellable), then draw its result: the importance bar chart and sentence on the run
page, one row's waterfall on the Predict page, the small version's numbers beside the original's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from studio import jobs
from studio.app import ui
from studio.core.errors import StudioError
from studio.core.text import as_plot_text

REFRESH_SECONDS = 1
PRUNE_CHOICES = (0.0, 0.3, 0.5, 0.7)
"""The shares of weights the run page offers to prune before a small version's 8-bit step."""


# --------------------------------------------------------------------------- charts
def importance_figure(result: dict[str, Any], most: int = 20) -> go.Figure:
    """One bar per raw column (largest at the top): the test score's drop when the column is shuffled,
    with its spread over the repeats as an error bar."""
    columns = result["columns"][:most][::-1]
    metric = result.get("metric", "score")
    fig = go.Figure(
        go.Bar(
            x=[c["mean"] for c in columns],
            y=[as_plot_text(c["column"]) for c in columns],
            orientation="h",
            error_x={"type": "data", "array": [c["std"] for c in columns], "visible": True},
            marker_color="#4c78a8",
            hovertemplate=f"%{{y}}: {metric} drops by %{{x:.3f}} when shuffled<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=f"drop in test {metric} when the column is shuffled", zeroline=True)
    fig.update_yaxes(type="category")
    fig.update_layout(height=max(220, 60 + 28 * len(columns)), margin={"l": 10, "r": 20, "t": 10, "b": 50})
    return fig


def waterfall_figure(result: dict[str, Any], most: int = 12) -> go.Figure:
    """From the average row's prediction, each column's push (largest first), to this row's prediction."""
    ranked = sorted(result["contributions"].items(), key=lambda p: abs(p[1]), reverse=True)
    shown, rest = ranked[:most], ranked[most:]
    names = ["average row"] + [as_plot_text(name) for name, _ in shown]
    values = [result["baseline"]] + [value for _, value in shown]
    measures = ["absolute"] + ["relative"] * len(shown)
    if rest:
        names.append(f"{len(rest)} other columns")
        values.append(sum(value for _, value in rest))
        measures.append("relative")
    names.append("this row")
    values.append(result["prediction"])
    measures.append("total")
    fig = go.Figure(
        go.Waterfall(
            x=values,
            y=names,
            measure=measures,
            orientation="h",
            increasing={"marker": {"color": "#54a24b"}},
            decreasing={"marker": {"color": "#e45756"}},
            totals={"marker": {"color": "#4c78a8"}},
            hovertemplate="%{y}: %{x:.4g}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_xaxes(title_text=as_plot_text(result.get("explains", "prediction")))
    fig.update_layout(height=max(240, 80 + 30 * len(names)), margin={"l": 10, "r": 20, "t": 10, "b": 50})
    return fig


# --------------------------------------------------------------------------- following a job
def follow(job: jobs.Job, key: str, show_result: Callable[[jobs.Job, dict[str, Any]], None]) -> None:
    """A job's state: progress with a Stop button while it waits or runs (refreshed every second), its
    reason when it failed or was stopped, and ``show_result`` once it has one."""

    @st.fragment(run_every=REFRESH_SECONDS if job.is_active else None)
    def live() -> None:
        try:
            current = jobs.get_job(job.id)
        except StudioError:
            return
        if current.state != job.state:
            st.rerun()
        if current.is_active:
            words = "waiting for a free slot" if current.state == jobs.QUEUED else "working"
            st.progress(min(1.0, current.fraction or 0.0), text=words)
            if not current.cancel_requested and st.button("Stop", key=f"{key}-stop"):
                jobs.cancel_job(current.id)
                st.rerun()
            return
        result = jobs.read_action_result(current)
        if current.state != jobs.SUCCEEDED:
            st.warning(ui.as_text(current.reason or f"It ended {current.state}."), icon=":material/warning:")
        if result is not None:
            show_result(current, result)

    live()


def start(parent: jobs.Job, action: str, options: dict[str, Any] | None = None) -> None:
    try:
        jobs.submit_action(parent, action, options)
    except StudioError as err:
        ui.show_error(err)
        return
    st.rerun()


# --------------------------------------------------------------------------- run page: a table model
def show_importance(job: jobs.Job, result: dict[str, Any]) -> None:
    st.markdown(f"**{ui.as_text(result['sentence'])}**")
    st.plotly_chart(importance_figure(result), key="importance-chart", config={"displaylogo": False})
    st.caption(
        f"Each bar is how much the test {result['metric']} ({result['score']:.3f}) drops when that column's "
        f"values are shuffled among the {result['rows']:,} test rows (mean of {result['repeats']} shuffles; "
        "the whisker is their spread). A column near zero hardly matters to this model."
    )


def model_explanation(parent: jobs.Job) -> None:
    """The run page's "What drives the predictions" section (tables): importance, as a job."""
    st.subheader("What drives the predictions")
    latest = jobs.latest_action(parent.id, "explain")
    if latest is None or not latest.is_active:
        label = "Explain this model" if latest is None else "Explain again"
        st.caption("Shuffles each column of the test rows in turn and measures how much the score drops.")
        if st.button(label, key="explain-model", icon=":material/insights:"):
            start(parent, "explain")
    if latest is not None:
        follow(latest, "explain-model", show_importance)


# --------------------------------------------------------------------------- Predict page: one row
def show_row(job: jobs.Job, result: dict[str, Any]) -> None:
    st.markdown(ui.as_text(result["sentence"]))
    st.plotly_chart(waterfall_figure(result), key="row-waterfall", config={"displaylogo": False})
    st.caption(
        "Integrated gradients: each bar is how much a column moved the prediction away from the average test "
        "row's; together they add up to this row's prediction."
    )


def row_explanation(parent_id: str | None, frame: Any) -> None:
    """The Predict page's "Why?" for one row of ``frame`` (a model trained here only)."""
    st.subheader("Why this prediction?")
    if not parent_id:
        st.caption("Explanations are made for models trained here (choose 'A model trained here' above).")
        return
    try:
        parent = jobs.get_job(parent_id)
    except StudioError as err:
        ui.show_error(err)
        return
    number = st.number_input(
        "Row number", min_value=1, max_value=max(1, len(frame)), value=1, step=1, key="why-row",
        help="The row's number in the predictions above (1 is the first).",
    )
    if st.button("Why?", key="why-run", icon=":material/help:"):
        row = frame.iloc[int(number) - 1].to_dict()
        start(parent, "explain_row", {"row": {str(k): _plain(v) for k, v in row.items()}})
    latest = jobs.latest_action(parent.id, "explain_row")
    if latest is not None:
        follow(latest, "why", show_row)


def _plain(value: Any) -> Any:
    """A cell as JSON: numbers and text as they are, missing as None, anything else as its text."""
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


# --------------------------------------------------------------------------- pictures: saliency maps
SALIENCY_HELP = (
    "Grad-CAM: red where the network's last convolutional block weighed most for the class it chose. "
    "Marks on a background, a border or a watermark mean the model learned a shortcut."
)


def mistakes_switch(
    parent: jobs.Job, switch: str, switch_key: str, button: str, show: Callable, help: str | None = None
) -> None:
    """A run page's switch over its mistakes: once on, a button makes the model's explanation of them
    (an ``explain`` job, again only if the last one failed or was stopped), then ``show`` draws it."""
    if not st.toggle(switch, key=switch_key, help=help):
        return
    latest = jobs.latest_action(parent.id, "explain")
    again = latest is None or (not latest.is_active and latest.state != jobs.SUCCEEDED)
    if again and st.button(button, key="explain-model", icon=":material/visibility:"):
        start(parent, "explain")
    if latest is not None:
        follow(latest, "explain-model", show)


def saliency_gallery(parent: jobs.Job) -> None:
    """The run page's switch over the misclassified pictures: their saliency maps (made by a job)."""
    mistakes_switch(
        parent, "Show where the model looked", "gradcam-on", "Make the saliency maps", show_saliency, SALIENCY_HELP
    )


def show_saliency(job: jobs.Job, result: dict[str, Any]) -> None:
    pictures = result.get("pictures") or []
    if not pictures:
        st.caption(ui.as_text(result.get("sentence", "")))
        return
    folder = jobs.store.job_dir(job.id)
    st.image(
        [str(folder / item["file"]) for item in pictures],
        caption=[ui.as_text(f"is {item['label']} · taken for {item['predicted']}") for item in pictures],
        width=128,
    )
    st.caption(ui.as_text(result.get("sentence", "")) + " " + SALIENCY_HELP)


def card_saliency(parent_id: str | None, paths: list[str]) -> dict[int, str] | None:
    """The Predict page's switch: saliency maps for the predicted pictures (``paths``, saved uploads),
    made by a job; returns picture index -> map file once made (None while off or not made)."""
    if not st.toggle("Show where the model looked", key="predict-gradcam-on", help=SALIENCY_HELP):
        return None
    if not parent_id:
        st.caption("Saliency maps are made for models trained here (choose 'A model trained here' above).")
        return None
    try:
        parent = jobs.get_job(parent_id)
    except StudioError as err:
        ui.show_error(err)
        return None
    latest = jobs.latest_action(parent.id, "explain_row")
    if latest is None or latest.options.get("pictures") != paths:
        start(parent, "explain_row", {"pictures": paths})
        return None
    found: dict[int, str] = {}

    def remember(job: jobs.Job, result: dict[str, Any]) -> None:
        folder = jobs.store.job_dir(job.id)
        found.update({i: str(folder / item["file"]) for i, item in enumerate(result.get("pictures") or [])})

    follow(latest, "predict-gradcam", remember)
    return found or None


# --------------------------------------------------------------------------- text: which words mattered
def words_html(pieces: list[list[Any]]) -> str:
    """The text as typed, every character escaped (shown as text, never as markup), each word on a
    background: green where it raised the prediction, red where it lowered it, stronger for more."""
    import html

    top = max((abs(share) for _, share in pieces), default=0.0) or 1.0
    out = []
    for piece, share in pieces:
        text = html.escape(str(piece), quote=True).replace("\n", "<br>")
        if not share:
            out.append(text)
            continue
        alpha = 0.1 + 0.7 * abs(share) / top
        colour = f"rgba(84, 162, 75, {alpha:.2f})" if share > 0 else f"rgba(228, 87, 86, {alpha:.2f})"
        out.append(
            f'<span style="background:{colour};border-radius:3px;padding:0 1px" '
            f'title="{share:+.3g}">{text}</span>'
        )
    return '<div style="line-height:1.9;white-space:pre-wrap">' + "".join(out) + "</div>"


def show_words(job: jobs.Job, result: dict[str, Any]) -> None:
    st.markdown(ui.as_text(result["sentence"]))
    for column, pieces in result["texts"].items():
        if len(result["texts"]) > 1:
            st.caption(ui.as_text(column))
        st.html(words_html(pieces))
    st.caption(
        f"Green words raised the {result['explains']}, red ones lowered it (integrated gradients, from an "
        f"empty text: {result['baseline']:.3g}, to this text: {result['prediction']:.3g})."
    )


def show_mistake_words(job: jobs.Job, result: dict[str, Any]) -> None:
    """Each explained mistake: its true answer and the model's, its text with the words coloured."""
    st.markdown(ui.as_text(result["sentence"]))
    for row in result["rows"]:
        st.markdown(
            f"**True answer:** {ui.as_text(row['label'])} · **the model said:** {ui.as_text(row['predicted'])}"
        )
        for column, pieces in row["texts"].items():
            if len(row["texts"]) > 1:
                st.caption(ui.as_text(column))
            st.html(words_html(pieces))
    if result["rows"]:
        st.caption(
            "Green words pushed the model toward the answer it gave, red ones away from it (integrated "
            "gradients from an empty text, toward the predicted class's probability or the predicted number)."
        )


def mistake_words(parent: jobs.Job) -> None:
    """The text run page's switch under its mistakes: the worst ones with their words coloured."""
    mistakes_switch(
        parent, "Show which words led the model astray", "mistake-words-on", "Colour the words", show_mistake_words
    )


def text_explanation(parent_id: str | None, typed: dict[str, str]) -> None:
    """The Predict page's switch under a typed text: which words mattered (made by a job)."""
    if not st.toggle("Show which words mattered", key="predict-text-why"):
        return
    if not parent_id:
        st.caption("Explanations are made for models trained here (choose 'A model trained here' above).")
        return
    if not any(str(v).strip() for v in typed.values()):
        st.caption("Type a text first.")
        return
    try:
        parent = jobs.get_job(parent_id)
    except StudioError as err:
        ui.show_error(err)
        return
    latest = jobs.latest_action(parent.id, "explain_row")
    if latest is None or latest.options.get("row") != typed:
        start(parent, "explain_row", {"row": dict(typed)})
        return
    follow(latest, "predict-text-why", show_words)


# --------------------------------------------------------------------------- run page: a small version
def _size(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def show_small(job: jobs.Job, result: dict[str, Any]) -> None:
    import pandas as pd

    metric, unit = result["metric"], result["unit"]
    if not result.get("refused"):  # a refusal's sentence is the job's reason, shown above
        st.markdown(ui.as_text(result["sentence"]))
    table = pd.DataFrame(
        {
            "": ["file size", f"CPU time per {unit}", f"test {metric}"],
            "original": [
                _size(result["original"]["size_bytes"]),
                f"{result['original']['seconds_per_item'] * 1e3:.3f} ms",
                f"{result['original']['score']:.4f}",
            ],
            "small": [
                _size(result["small"]["size_bytes"]),
                f"{result['small']['seconds_per_item'] * 1e3:.3f} ms",
                f"{result['small']['score']:.4f}",
            ],
        }
    )
    st.dataframe(table, hide_index=True, key="small-table")
    st.caption(
        f"{result['method']}. Measured on the {result['test_items']:,} test {unit}s, one {unit} at a time on "
        f"one CPU core, both in ONNX Runtime. Allowed loss: {result['tolerance']:g} of {metric}."
    )
    if result.get("refused") or not result.get("file"):
        return
    folder = jobs.store.job_dir(job.id)
    if result.get("bundle") and (folder / result["bundle"]).is_file():
        _download(
            "Download the small version (bundle .zip)",
            folder / result["bundle"],
            "download-small-bundle",
            "Loads like the original bundle (mlflow.pyfunc, raw inputs in, predictions out) without the "
            "studio; it needs onnxruntime, and predicts through the 8-bit network inside.",
            main=True,
        )
    if (folder / result["file"]).is_file():
        _download(
            "Download the small network alone (.onnx)",
            folder / result["file"],
            "download-small",
            "Runs with ONNX Runtime alone (no studio, no torch): its inputs are the same as the original "
            "bundle's model.onnx, described in that bundle's README.",
        )


def _download(label: str, path: Any, key: str, caption: str, main: bool = False) -> None:
    st.download_button(
        label,
        data=path.read_bytes,
        file_name=path.name,
        mime="application/zip" if path.suffix == ".zip" else "application/octet-stream",
        key=key,
        icon=":material/download:",
        on_click="ignore",
        type="primary" if main else "secondary",
    )
    st.caption(caption)


def small_version(parent: jobs.Job, metric: str) -> None:
    """The run page's "Make a small version" (8-bit integers), as a job, with the numbers side by side."""
    st.subheader("A small version for small devices")
    latest = jobs.latest_action(parent.id, "compress")
    busy = latest is not None and latest.is_active  # the choices stay shown (and kept) while it works
    allowed = st.number_input(
        f"Largest loss of test {metric} to accept",
        min_value=0.0,
        max_value=1.0,
        value=0.01 if metric == "accuracy" else 0.02,
        step=0.005,
        format="%.3f",
        key="small-tolerance",
        disabled=busy,
        help="A small version that loses more than this is refused (with the measured numbers).",
    )
    pruned = st.selectbox(
        "Also prune (set the smallest weights to zero first)",
        PRUNE_CHOICES,
        format_func=lambda share: "no pruning" if not share else f"{share:.0%} of the weights",
        key="small-prune",
        disabled=busy,
        help="Zeroes that share of the smallest weights of the convolutions and fully connected layers "
        "before the 8-bit step. The zeros pack well in a zip; the score it costs is measured.",
    )
    st.caption("Stores the network's weights as 8-bit integers, then measures size, speed and score.")
    if not busy and st.button("Make a small version", key="make-small", icon=":material/compress:"):
        start(parent, "compress", {"tolerance": allowed, **({"prune": pruned} if pruned else {})})
    if latest is not None:
        follow(latest, "make-small", show_small)
