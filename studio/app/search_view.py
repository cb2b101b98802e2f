"""What the search page shows, as plain data and Plotly figures (no Streamlit widgets, no training).

A search's trials are its jobs (state, times, the trial's settings in its spec) and its Optuna study
(each trial's reported validation scores). optuna is imported only inside the functions that read the
study, never when a page starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from studio.app.charts import empty_figure, metric_label, parallel_coordinates, sentence
from studio.core.text import as_plot_text
from studio.jobs.store import Job, format_duration
from studio.search import records
from studio.search.records import Search
from studio.search.space import AUGMENTATION

STATE_WORDS = {
    "complete": "finished",
    "pruned": "stopped early",
    "running": "training",
    "waiting": "waiting for a device",
    "failed": "failed",
    "stopped": "not started",
}
STATE_COLORS = {
    "complete": "#2ca02c",
    "pruned": "#ff7f0e",
    "running": "#1f77b4",
    "waiting": "#7f7f7f",
    "failed": "#d62728",
    "stopped": "#bbbbbb",
}
HONEST_SELECTION = (
    "Trials are compared on their validation scores only; they train without touching the test rows. "
    "When the search ends, the chosen trial's model is tested once, so its test score is an honest "
    "measure of the model you get."
)
MIN_TRIALS_FOR_IMPORTANCE = 4


@dataclass
class TrialRow:
    number: int
    job_id: str
    state: str  # a key of STATE_WORDS
    value: float | None  # the validation score of the model the trial kept (so far, while it trains)
    started: float | None  # seconds after the search was created
    ended: float | None
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    experiment_id: str | None = None
    epoch: int | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why it failed, or why the search stopped it
    quality: dict[str, float] = field(default_factory=dict)  # the guess's test scores (studio.core.quality)


def trial_state(job: Job) -> str:
    if job.trial_state in ("complete", "pruned", "failed", "stopped"):
        return job.trial_state
    if job.state == "running":
        return "running"
    if job.state == "queued":
        return "waiting"
    if job.state == "succeeded":
        return "complete"
    return "failed" if job.state == "failed" else "stopped" if job.started_at is None else "pruned"


def trial_rows(search: Search) -> list[TrialRow]:
    """One row per trial job, with its settings and its score (from the study), oldest first."""
    from studio.search.control import trials

    jobs = trials(search.id)
    scores = study_scores(search) if jobs else {}
    names = [d.path for d in search.space.dimensions]
    rows = []
    for job in jobs:
        rows.append(
            TrialRow(
                number=job.trial_number if job.trial_number is not None else -1,
                job_id=job.id,
                state=trial_state(job),
                value=scores.get(job.trial_number),
                started=None if job.started_at is None else job.started_at - search.created_at,
                ended=None if job.ended_at is None else job.ended_at - search.created_at,
                params=trial_params(job, names),
                run_id=job.mlflow_run_id,
                experiment_id=job.experiment_id,
                epoch=job.epoch,
                test_metrics=dict(job.test_metrics),
                reason=job.reason if job.state in ("failed", "cancelled") else None,
                quality=dict(job.quality),
            )
        )
    return rows


def study_scores(search: Search) -> dict[int, float]:
    """``trial number -> score``: its final value, else the last one it reported."""
    try:
        from studio.search.study import load_study

        study = load_study(search.id, search.seed)
    except Exception:  # noqa: BLE001 - no study yet (the driver has not started): no scores
        return {}
    scores = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.value is not None:
            scores[trial.number] = float(trial.value)
        elif trial.intermediate_values:
            scores[trial.number] = float(trial.intermediate_values[max(trial.intermediate_values)])
    return {k: v for k, v in scores.items() if math.isfinite(v)}


def trial_params(job: Job, names: list[str]) -> dict[str, Any]:
    """The searched settings as the trial's spec has them (the augmentation strength read back)."""
    data = job.spec.model_dump()
    found: dict[str, Any] = {}
    for name in names:
        if name == AUGMENTATION:
            found[name] = round((1.0 - data["image"]["crop_scale"]) / 0.5, 3)
            continue
        node: Any = data
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found[name] = node
    return found  # a network without a setting (the linear model's width) leaves it out


def param_titles(search: Search) -> dict[str, str]:
    return {d.path: d.title for d in search.space.dimensions}


# --------------------------------------------------------------------------- words
def status_text(search: Search, rows: list[TrialRow]) -> str:
    """``Searching · 4 trials finished, 1 stopped early, 1 training · 2 min left``."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    parts = [f"{n} {STATE_WORDS[s]}" for s, n in counts.items()]
    head = {
        records.RUNNING: "Cancelling" if search.cancel_requested else "Searching",
        records.FINISHED: "Finished",
        records.CANCELLED: "Cancelled",
        records.FAILED: "Failed",
    }[search.state]
    trials = f"{len(rows)} trial{'s' if len(rows) != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")
    tail = ""
    if search.is_active and search.seconds_left is not None:
        tail = f" · {format_duration(search.seconds_left)} of {format_duration(search.budget_seconds)} left"
    elif search.budget_seconds is not None:
        tail = f" · used {format_duration(search.used_seconds)} of {format_duration(search.budget_seconds)}"
    return f"{head} · {trials}{tail}"


def chosen_text(search: Search, rows: list[TrialRow]) -> str:
    """Which trial's model the search chose and why: the best score, or, when a higher one did not beat
    your settings by more than chance on the same folds, the one it chose instead and that reason."""
    best = next((r for r in rows if r.job_id == search.best_job_id), None)
    number = best.number if best else "?"
    mine = (
        f" (your settings, trial 0: {search.default_value:.4g})" if search.default_value is not None else ""
    )
    sign = 1 if search.direction == "max" else -1
    scored = [r for r in rows if r.state == "complete" and r.value is not None]
    top = max(scored, key=lambda r: sign * r.value, default=None)
    others = sum(1 for r in rows if r.number != 0 and r.state in ("complete", "pruned", "failed"))
    if top is None or search.best_value is None or sign * top.value <= sign * search.best_value:
        if number == 0 and not search.is_active:
            return (
                f"Nothing beat your own settings: none of the {others} other trial{'s' if others != 1 else ''} "
                f"scored a better {score_words(search)} than trial 0 ({search.best_value:.4g}), so the search "
                "keeps your settings."
            )
        return f"Trial {number} has the best {score_words(search)}: {search.best_value:.4g}{mine}."
    who = "your settings (trial 0)" if number == 0 else f"trial {number}"
    tried = max(1, sum(1 for r in scored if r.number != 0))
    lead = (
        "Nothing beat your own settings by more than chance. " if number == 0 and not search.is_active else ""
    )
    return (
        f"{lead}The search keeps {who}, whose {score_words(search)} is {search.best_value:.4g}"
        f"{mine if number else ''}. "
        f"Trial {top.number} scored {top.value:.4g}, but did not beat your settings by more than chance on "
        f"the same cross-validation folds (a one-sided paired test at 5%, shared among the {tried} trials "
        "it was the best of): with a few dozen rows per fold, many settings score a row or two higher by "
        "luck, and such a setting does no better on new rows."
    )


def lower_first(text: str) -> str:
    """``Validation R²`` → ``validation R²`` (``str.lower`` would make it r²)."""
    return text[:1].lower() + text[1:]


def score_words(search: Search) -> str:
    """``validation accuracy (higher is better)``, or on a small table ``validation accuracy, averaged
    over 5 cross-validation folds (higher is better)``."""
    better = "higher" if search.direction == "max" else "lower"
    folds = search_folds(search)
    averaged = f", averaged over {folds} cross-validation folds" if folds > 1 else ""
    return f"{lower_first(metric_label(search.metric))}{averaged} ({better} is better)"


def search_folds(search: Search) -> int:
    """On how many cross-validation folds the search scores each trial (1: its validation rows)."""
    from studio.core.errors import DatasetError
    from studio.data import get_dataset
    from studio.search.pruning import cv_folds

    spec = search.spec
    try:
        return cv_folds(spec, get_dataset(spec.data.dataset_id).n_rows)
    except DatasetError:  # the data set was deleted since: its scores still stand, the count is unknown
        return 1


def folds_words(search: Search) -> str:
    """What cross-validation means here, for a search that uses it (else nothing)."""
    folds = search_folds(search)
    if folds < 2:
        return ""
    if search.spec.data.use_all_data:
        return (
            f"'Use all my data' is on, so each trial trains {folds} fold models, each checked on its own "
            "block of validation rows (the test rows stay aside), and keeps them as one model that averages "
            "them. A trial's score is the mean of its fold models' validation scores: what one of them "
            "scores on rows it never saw. The averaged model cannot be scored on validation rows (each one "
            "trained all but one of its models), so the chosen trial's is tested once on the test rows, "
            "where averaging usually gains a little over that mean."
        )
    return (
        f"The table is small, so each trial is scored on {folds} different blocks of validation rows (the "
        "test rows stay aside): its own run's, then the same settings trained again with each other block "
        "held out. One small validation split is too few rows to rank many settings by."
    )


def importance_sentences(search: Search, rows: list[TrialRow]) -> list[str]:
    """Optuna's parameter importances in plain words, most important first; none before a few trials."""
    finished = sum(row.state == "complete" for row in rows)
    if finished < MIN_TRIALS_FOR_IMPORTANCE:
        return []
    try:
        import warnings

        import optuna

        from studio.search.study import load_study

        study = load_study(search.id, search.seed)
        with warnings.catch_warnings():  # "some regimes have less than 2 trials": said below in words
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except Exception:  # noqa: BLE001 - e.g. every finished trial had the same settings
        return []
    titles = param_titles(search)
    ranked = [(titles.get(name, name), share) for name, share in found.items() if share > 0]
    if not ranked:
        return []
    sentences = [f"{sentence(ranked[0][0])} mattered most ({ranked[0][1]:.0%} of the differences)."]
    sentences += [f"{sentence(title)}: {share:.0%}." for title, share in ranked[1:4]]
    sentences.append(f"(Judged from {finished} finished trials: more trials make this surer.)")
    return sentences


# --------------------------------------------------------------------------- figures
def best_so_far_figure(search: Search, rows: list[TrialRow], now: float | None = None) -> go.Figure:
    """The best validation score over time (finished trials), the spec's own settings as a reference
    line, and one dot per trial where it stands (finished, stopped early, training)."""
    scored = [r for r in rows if r.value is not None]
    if not scored:
        return empty_figure("No trial has a validation score yet.")
    elapsed = (now or time.time()) - search.created_at
    best: list[tuple[float, float]] = []
    current: float | None = None
    for row in sorted((r for r in scored if r.state == "complete"), key=lambda r: r.ended or 0):
        if current is None or (row.value > current if search.direction == "max" else row.value < current):
            current = row.value
        best.append(((row.ended or 0) / 60, current))
    fig = go.Figure()
    if best:
        end = elapsed if search.is_active else max(b[0] for b in best) * 60
        xs = [b[0] for b in best] + [max(end / 60, best[-1][0])]
        ys = [b[1] for b in best] + [best[-1][1]]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": "#2ca02c"}, name="best so far")
        )
    for state in ("complete", "pruned", "running", "failed"):
        points = [r for r in scored if r.state == state]
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[((r.ended if r.ended is not None else elapsed) / 60) for r in points],
                    y=[r.value for r in points],
                    mode="markers",
                    marker={"color": STATE_COLORS[state], "size": 9},
                    name=STATE_WORDS[state],
                    text=[f"trial {r.number}" for r in points],
                    hovertemplate="%{text}: %{y:.4g}<extra></extra>",
                )
            )
    if search.default_value is not None:
        fig.add_hline(
            y=search.default_value,
            line_dash="dot",
            line_color="#7f7f7f",
            annotation_text="your settings (trial 0)",
            annotation_position="bottom right",
        )
    fig.update_xaxes(rangemode="tozero")
    fig.update_layout(
        height=360,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis_title="minutes since the search started",
        yaxis_title=as_plot_text(sentence(metric_label(search.metric))),
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def settings_figure(search: Search, rows: list[TrialRow]) -> go.Figure:
    """Parallel coordinates: each finished trial's settings against its validation score (learning rate
    and weight decay on a log scale)."""
    titles = param_titles(search)
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    if len(done) < 2:
        return empty_figure("Two finished trials are needed to compare their settings.")
    logs = {d.path for d in search.space.dimensions if d.log}
    records_ = []
    for row in done:
        entry = {}
        for name, value in row.params.items():
            entry[name] = math.log10(value) if name in logs and isinstance(value, int | float) else value
        entry["score"] = row.value
        records_.append(entry)
    frame = pd.DataFrame(records_)
    labels = {n: titles.get(n, n) + (" (log10)" if n in logs else "") for n in frame.columns}
    labels["score"] = sentence(metric_label(search.metric))
    params = [n for n in titles if n in frame.columns and frame[n].notna().all()]
    return parallel_coordinates(frame, params, "score", labels=labels)


def trials_frame(search: Search, rows: list[TrialRow]) -> pd.DataFrame:
    """The trials table: number, state, score, test score (the chosen one only), settings, run page link."""
    titles = param_titles(search)
    test_key = "test/" + search.metric.split("/", 1)[-1]
    table = []
    for row in rows:
        entry: dict[str, Any] = {
            "Trial": row.number,
            "State": STATE_WORDS[row.state] + (" (chosen)" if row.job_id == search.best_job_id else ""),
            "Validation score": row.value,
            "Test score": _test_text(row, test_key) if row.job_id == search.best_job_id else "",
            "Epochs": row.epoch,
            "Why it stopped": row.reason or "",
        }
        for name, title in titles.items():
            entry[title] = value_text(name, row.params.get(name))
        entry["Run"] = f"/runs?job={row.job_id}"
        table.append(entry)
    return pd.DataFrame(table)


def chosen_verdict(search: Search, rows: list[TrialRow]) -> Any:
    """The chosen trial's :class:`studio.core.quality.Verdict` once it was tested (else None)."""
    from studio.core.quality import verdict

    best = next((r for r in rows if r.job_id == search.best_job_id), None)
    return verdict({**best.test_metrics, **best.quality}) if best is not None else None


def _test_text(row: TrialRow, key: str) -> str:
    value = row.test_metrics.get(key)
    return "" if value is None else f"{value:.4f}"


def value_text(name: str, value: Any) -> str:
    """A trial's setting for people: network and optimiser by their names in the form, numbers short."""
    if value is None:
        return ""
    if name == "architecture.name":
        from studio.core.spec import ARCHITECTURES

        info = ARCHITECTURES.get(value)
        return info.title if info else str(value)
    if name == "optimizer.name":
        return {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}.get(value, str(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def compare_link(search: Search, rows: list[TrialRow], base_url: str | None) -> str | None:
    """The MLflow UI's compare view of the trials that have a run."""
    runs = [r.run_id for r in rows if r.run_id]
    if not base_url or not runs or not search.experiment_id:
        return None
    from studio import tracking

    return tracking.mlflow_ui_compare_url(base_url, search.experiment_id, runs[:100])


def learning_rate_figure(
    learning_rates: list[float], losses: list[float], suggestion: float | None
) -> go.Figure:
    """The learning-rate finder's smoothed training loss against the learning rate (log scale)."""
    if not learning_rates:
        return empty_figure("The finder has no points.")
    fig = go.Figure(go.Scatter(x=learning_rates, y=losses, mode="lines", name="training loss (smoothed)"))
    if suggestion:
        fig.add_vline(
            x=suggestion,
            line_dash="dot",
            annotation_text=f"suggested: {suggestion:.2g}",
            line_color="#d62728",
        )
    fig.update_layout(
        height=300,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis={"type": "log", "title": "learning rate"},
        yaxis_title="training loss",
    )
    return fig
