"""Data helpers for the Runs, Compare and Predict pages: plain words for job states, readable specs,
compare tables with the best values marked, model files to download and predictions.

Cheap to import (pandas and the job store only). MLflow is reached through :mod:`studio.tracking`
(lazy); torch only through :func:`studio.bundle.load_bundle`, which the Predict page calls when asked.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from studio import tracking
from studio.app.charts import metric_label, metric_name, sentence
from studio.app.forms import SECTION_TITLES
from studio.core import ensembles, quality, settings
from studio.core.errors import BundleError, DatasetError
from studio.core.spec import ARCHITECTURES, RunSpec, main_metric, metric_mode
from studio.core.tasks import task_info
from studio.core.text import as_text
from studio.jobs import CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING, SUCCEEDED, Job, format_duration

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from studio.tracking import RunSummary

BEST_MARK = "★"
BEST_COLOR = "rgba(33, 195, 84, 0.25)"

# Markdown with Streamlit's bundled icon font (emoji need a colour-emoji font the machine may lack).
_STATUS = {
    QUEUED: ":gray[:material/hourglass_empty:] Waiting",
    RUNNING: ":blue[:material/sync:] Training",
    SUCCEEDED: ":green[:material/check_circle:] Finished",
    FAILED: ":red[:material/error:] Failed",
    CANCELLED: ":orange[:material/cancel:] Cancelled",
    INTERRUPTED: ":orange[:material/pause_circle:] Interrupted",
}
_CAN_RESUME = " — can resume"
_STATUS_PRUNED = ":gray[:material/content_cut:] Stopped early by the search"

# A finished job with a note did not end plainly (its loss became NaN; an earlier epoch was kept).
_STATUS_WITH_NOTE = ":orange[:material/warning:] Finished with an earlier epoch"


# --------------------------------------------------------------------------- job states in words
def has_note(job: Job) -> bool:
    """A finished run that did not end plainly: ``job.reason`` says how it ended instead."""
    return job.state == SUCCEEDED and bool(job.reason)


def stopped_by_search(job: Job) -> bool:
    """A search's trial that the search stopped because it was behind the others (or out of time)."""
    return job.state == CANCELLED and getattr(job, "trial_state", None) == "pruned"


def status_label(job: Job) -> str:
    """The job's state in words with a coloured icon, as Streamlit markdown (``… Finished``)."""
    if has_note(job):
        return _STATUS_WITH_NOTE
    if stopped_by_search(job):
        return _STATUS_PRUNED
    label = _STATUS.get(job.state, job.state)
    return label + _CAN_RESUME if job.can_resume else label


def device_words(device: str | None) -> str:
    """Where a job trained, in words: ``cpu:0`` → ``the processor (CPU)``, ``cuda:1`` → ``GPU 1``,
    ``cuda:0,cuda:1`` → ``GPUs 0 and 1``."""
    if not device:
        return ""
    slots = [part.strip() for part in device.split(",") if part.strip()]
    gpus = [slot.split(":", 1)[1] if ":" in slot else "0" for slot in slots if slot.startswith("cuda")]
    if not gpus:
        return "the processor (CPU)" if len(slots) <= 1 else f"{len(slots)} processor slots (CPU)"
    if len(gpus) == 1:
        return f"GPU {gpus[0]}"
    return f"GPUs {', '.join(gpus[:-1])} and {gpus[-1]}"


def progress_value(job: Job) -> float:
    """The job's progress between 0 and 1, for ``st.progress``."""
    if job.state == SUCCEEDED:
        return 1.0
    fraction = job.fraction or 0.0
    return min(1.0, max(0.0, fraction)) if math.isfinite(fraction) else 0.0


def progress_caption(job: Job) -> str:
    """The line above a job's bar: how far it got and how long it has left (or took)."""
    if job.is_active:
        return job.progress_text
    parts = []
    if job.epoch is not None and job.max_epochs:
        if has_note(job):
            parts.append(f"stopped at epoch {job.epoch} of {job.max_epochs}")
        elif job.state == SUCCEEDED and job.epoch < job.max_epochs:
            parts.append(
                f"stopped early after epoch {job.epoch} of {job.max_epochs} (it had stopped improving)"
            )
        else:
            parts.append(f"epoch {job.epoch}/{job.max_epochs}")
    elif job.state != SUCCEEDED:
        parts.append("stopped before training began")
    saved = job.checkpoint if job.state in (INTERRUPTED, CANCELLED) else None
    if saved is not None:
        parts.append(f"saved up to epoch {saved.epoch}")
    if job.seconds is not None:
        parts.append(f"took {format_duration(job.seconds)}")
    return " · ".join(parts)


UNTESTED_TRIAL = (
    "It is one trial of a search, so it was not tested: the search compares its trials on their validation "
    "scores only and tests the one it chooses, once, when it ends."
)


def state_message(job: Job) -> str:
    """One plain sentence: where the job stands and what to do next."""
    if job.state == QUEUED:
        return (
            "This run is waiting for a free device (processor or GPU). It starts by itself as soon as one is "
            "free; you can close this page meanwhile."
        )
    if job.state == RUNNING:
        if job.cancel_requested:
            return "Stopping this run: it ends within a few seconds."
        return (
            "Training now. The curves below update every few seconds; you can close this page and come back, "
            "training goes on."
        )
    if has_note(job):
        kept = task_info(job.spec.task).unit
        return (
            f"{job.reason} The scores below and the model to download are those of that epoch, measured "
            f"on {kept} it never saw."
        )
    if job.state == SUCCEEDED and getattr(job, "search_id", None) and not job.test_metrics:
        return (
            f"Training finished. {UNTESTED_TRIAL} Download the model, or compare this trial with others on "
            "the Compare page."
        )
    found = job_verdict(job)
    if found is not None and found.level == quality.GUESS:
        return (
            f"Training finished, but the model is no better than a guess: {_after_title(found)}{GUESS_ADVICE}"
        )
    if found is not None and found.level == quality.BARELY:
        return f"Training finished, but the model is only barely better than a guess: {_after_title(found)}"
    if job.state == SUCCEEDED:
        return (
            "Training finished. Check the test scores below, download the model, or compare this run with "
            "others on the Compare page."
        )
    saved = job.checkpoint if job.state in (INTERRUPTED, CANCELLED) else None
    resume = (
        f"Its progress up to epoch {saved.epoch} is saved: press Resume to continue from epoch "
        f"{saved.epoch + 1}, in the same MLflow run; it ends as if it had never stopped."
        if saved is not None
        else ""
    )
    if stopped_by_search(job):
        return (
            f"{job.reason or 'The search stopped this trial early.'} It is one trial of a search: the search "
            "compares its trials on their validation scores and keeps the best one."
        )
    if job.state == CANCELLED:
        if saved is not None:
            return f"This run was cancelled. {resume}"
        return "This run was cancelled. Its curves show how far it got; start a new run from the Train page."
    if job.state == INTERRUPTED:
        if saved is None:
            return (
                "This run was interrupted, and its saved progress is gone, so it cannot resume; start a new "
                "run from the Train page."
            )
        return f"This run was interrupted before it finished (the reason is below). {resume}"
    return "This run stopped with an error (see below)."


GUESS_ADVICE = (
    " Its inputs may say nothing about the target (free text, names or identifiers, which a table model "
    "cannot read), or there may be too few rows to learn from: check the feature columns under Settings "
    "used, add rows, or choose another target."
)


def _after_title(found: quality.Verdict) -> str:
    """The verdict's sentence without its leading title (``No better than a guess: …`` → ``…``)."""
    text = found.sentence.removeprefix(found.title)
    return text.lstrip(": ")


def job_verdict(job: Job) -> quality.Verdict | None:
    """How a finished run's test scores compare with a trivial guess's on the same rows (None when it
    was not tested, or ran before the studio scored the guess)."""
    if job.state != SUCCEEDED:
        return None
    return quality.verdict(job.outcome)


def finished_with_a_warning(job: Job) -> bool:
    """A finished run the page opens with a warning: it kept an earlier epoch after its loss became NaN,
    or its model is no better, or barely better, than a guess."""
    found = job_verdict(job)
    return has_note(job) or (found is not None and found.worrying)


VERDICT_BADGES = {
    quality.GUESS: ":red[:material/block:] **No better than a guess**",
    quality.BARELY: ":orange[:material/trending_flat:] **Barely better than a guess**",
}


def verdict_badge(job: Job) -> str:
    """Markdown for the Runs list when a finished run is no better, or barely better, than a guess."""
    found = job_verdict(job)
    return VERDICT_BADGES.get(found.level, "") if found is not None else ""


def ensemble_lines(job: Job) -> list[str]:
    """What the run page says about a fold ensemble ('use all my data'): the prediction cost and its
    fold models' own test scores; empty for one model."""
    return ensembles.lines(job.outcome)


def ensemble_label(job: Job) -> str:
    """``ensemble of 5`` for the Runs list (plain text, no Markdown in it); empty for one model."""
    return ensembles.short_label(job.quality)


def kept_epoch_text(job: Job) -> str | None:
    """Which epoch's model the run kept and why (None before the run ended or when it kept none)."""
    return quality.kept_epoch_of(job.spec, job.quality)


def smear_text(job: Job) -> str | None:
    """For a target learned on a log scale: the smearing factor its predictions are scaled by, in words."""
    return quality.smear_sentence(job.quality)


def validation_gap_text(job: Job) -> str | None:
    """A sentence when the kept epoch's validation score and the test score differ widely."""
    return quality.validation_gap_of(job.spec, job.outcome)


def failure_advice(reason: str | None) -> list[str]:
    """What to try after a failure, in plain steps, chosen from the reason's wording."""
    text = (reason or "").lower()
    tips: list[str] = []
    if "memory" in text:
        tips.append("Lower the batch size (Training settings) or choose a smaller network.")
    if "column" in text or "target" in text:
        tips.append("Check the target column and the feature columns on the Train page.")
    if "gpu" in text or "cuda" in text or "device" in text:
        tips.append("Set the device to 'auto' or 'cpu' in the advanced Training settings.")
    if "nan" in text or "diverge" in text or "infinite" in text:
        tips.append(
            "Lower the learning rate (to the value suggested above, or 10 times smaller) or turn on gradient "
            "clipping (advanced Training settings), then train again."
        )
    if "crashed" in text or not tips:
        tips.append(
            "Start the run again from the Train page; if it fails the same way, try the 'fast' preset."
        )
        tips.append("The technical log below says more; share it with whoever maintains the studio.")
    return tips


# --------------------------------------------------------------------------- metrics
def format_metric(metric: str, value: float | None) -> str:
    """``0.944`` → ``94.4%`` for shares (accuracy, F1, AUROC), 4 significant digits otherwise."""
    if value is None or not math.isfinite(value):
        return "–"
    if metric.split("/", 1)[-1] in {"accuracy", "f1_macro", "auroc"}:
        return f"{value:.1%}"
    return f"{value:.4g}"


def test_metric_cards(test_metrics: dict[str, float], task: str) -> list[tuple[str, str, str]]:
    """``(label, value text, help)`` for the final test scores, the task's main metric first."""
    first = "test/" + main_metric(task).split("/", 1)[1]
    keys = sorted(
        (k for k in test_metrics if k.startswith("test/")), key=lambda k: (k != first, k == "test/loss", k)
    )
    kept = task_info(task).unit
    cards = []
    for key in keys:
        better = "higher" if metric_mode(key) == "max" else "lower"
        explained = quality.metric_help(key)
        guess = test_metrics.get(quality.BASELINE + key.replace("/", "_", 1))
        against = (
            f" A trivial guess ({GUESS_WORDS[task_info(task).classes]}) scores {format_metric(key, guess)} "
            "on the same rows."
            if guess is not None
            else ""
        )
        cards.append(
            (
                sentence(metric_name(key)),
                format_metric(key, test_metrics[key]),
                f"{explained + ' ' if explained else ''}Measured on {kept} kept aside until the end "
                f"({metric_label(key)}); {better} is better.{against}",
            )
        )
    return cards


GUESS_WORDS = {True: "always the most common class", False: "always the training average"}


def job_history(job: Job) -> tuple[dict[str, list[tuple[int, float]]], int | None]:
    """The job's metric history from MLflow and its steps per epoch (empty before the run exists)."""
    if not job.mlflow_run_id:
        return {}, None
    run = tracking.get_run(job.mlflow_run_id)
    keys = [key for key in run.metrics if not key.startswith("test/")]
    return tracking.metric_history(job.mlflow_run_id, keys), steps_per_epoch(run)


def steps_per_epoch(run: RunSummary) -> int | None:
    try:
        value = int(run.tags.get(tracking.TAG_STEPS_PER_EPOCH, ""))
    except ValueError:
        return None
    return value if value > 0 else None


# --------------------------------------------------------------------------- the spec in words
def _choice_text(info: Any, value: Any) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    labels = extra.get("labels") or {}
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "(automatic)"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(labels.get(value, value))


def spec_table(spec: RunSpec, dataset_name: str | None = None) -> pd.DataFrame:
    """Every setting of a spec as ``Section | Setting | Value`` rows, with the form's titles."""
    rows: list[dict[str, str]] = [
        {"Section": "Run", "Setting": "Run name", "Value": spec.name or "(made up)"},
        {"Section": "Run", "Setting": "Task", "Value": task_words(spec.task)},
    ]
    unused = {task_info(spec.task).unused_section}
    for section, title in SECTION_TITLES.items():  # the Train form's own section titles
        if not section or section in unused:
            continue
        part = getattr(spec, section)
        for name, info in type(part).model_fields.items():
            value = getattr(part, name)
            if section == "architecture" and name == "name":
                arch = ARCHITECTURES.get(value)
                rows.append(
                    {"Section": title, "Setting": "Architecture", "Value": arch.title if arch else value}
                )
                continue
            if section == "architecture" and name == "params":
                arch = ARCHITECTURES.get(spec.architecture.name)
                fields = arch.params_model.model_fields if arch else {}
                for key, inner in value.items():
                    field_info = fields.get(key)
                    label = field_info.title if field_info and field_info.title else key
                    text = _choice_text(field_info, inner) if field_info else str(inner)
                    rows.append({"Section": title, "Setting": label, "Value": text})
                continue
            if section == "data" and name == "features" and not task_info(spec.task).uses_feature_columns:
                continue
            if section == "image" and name == "size" and value == 0:
                text = "automatic"
            elif section == "data" and name == "dataset_id" and dataset_name and dataset_name != value:
                text = f"{dataset_name} ({value})"
            elif section == "training" and name == "batch_size" and value == 0:
                text = "automatic"
            else:
                text = _choice_text(info, value)
            if section == "early_stopping" and name == "metric":
                text = metric_label(value)
            rows.append({"Section": title, "Setting": info.title or name, "Value": text})
    return pd.DataFrame(rows)


def task_words(task: str) -> str:
    """``image_classification`` → ``Image classification``."""
    try:
        return task_info(task).title
    except KeyError:  # a run of a data kind this studio does not have
        return task.replace("_", " ").capitalize()


def what_it_learns(spec: RunSpec) -> str:
    """``predicts **price** (regression)`` or ``tells which class a picture shows``, for a run's caption."""
    info = task_info(spec.task)
    if info.learns:
        return f"{info.learns} ({info.title.lower()})"
    return f"predicts **{as_text(spec.data.target)}** ({spec.task})"


def param_label(key: str) -> str:
    """A flattened spec key in words: ``optimizer.learning_rate`` → ``Learning rate``."""
    parts = key.split(".")
    if len(parts) == 1:
        info = RunSpec.model_fields.get(key)
        return info.title if info and info.title else key
    section = parts[0]
    if section == "architecture" and len(parts) == 3 and parts[1] == "params":
        for arch in ARCHITECTURES.values():
            info = arch.params_model.model_fields.get(parts[2])
            if info and info.title:
                return info.title
        return parts[2].replace("_", " ")
    model = RunSpec.model_fields.get(section)
    annotation = model.annotation if model else None
    fields = getattr(annotation, "model_fields", {})
    info = fields.get(parts[-1])
    if section == "architecture" and parts[-1] == "name":
        return "Architecture"
    return info.title if info and info.title else key


# --------------------------------------------------------------------------- the model file
def bundle_download_name(job: Job) -> str:
    """A file name for the job's model: ``<run name>-model.zip`` in safe characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", job.name).strip("-._")[:60] or job.id
    return f"{slug}-model.zip"


def bundle_file(job: Job) -> Path:
    """The job's model bundle on this machine, downloaded from MLflow into the job folder if needed."""
    if job.bundle_path and Path(job.bundle_path).is_file():
        return Path(job.bundle_path)
    if job.state != SUCCEEDED:
        raise BundleError("Only a run that finished has a model to download.")
    if not job.mlflow_run_id:
        raise BundleError(f"Run '{job.name}' has no model file (it was not recorded in MLflow).")
    folder = settings.studio_home() / "downloads" / job.id
    cached = folder / Path(tracking.BUNDLE_ARTIFACT).name
    if cached.is_file():
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return Path(tracking.download_bundle(job.mlflow_run_id, str(folder)))
    except Exception as err:  # MLflow raises its own exception types for missing artifacts
        raise BundleError(
            f"The model file of run '{job.name}' could not be fetched from MLflow ({type(err).__name__})."
        ) from err


def trained_models(jobs: list[Job]) -> list[Job]:
    """Finished jobs that have a model (a local bundle or an MLflow run to fetch it from)."""
    return [
        job
        for job in jobs
        if job.state == SUCCEEDED
        and ((job.bundle_path and Path(job.bundle_path).is_file()) or job.mlflow_run_id)
    ]


def model_label(job: Job) -> str:
    """``<run name> · predicts <target> · accuracy 94.4%`` for a model picker."""
    spec = job.spec
    main = "test/" + main_metric(spec.task).split("/", 1)[1]
    what = task_info(spec.task).unit if task_info(spec.task).fixed_target else f"predicts {spec.data.target}"
    label = f"{job.name} · {what}"
    if main in job.test_metrics:
        label += f" · {metric_name(main)} {format_metric(main, job.test_metrics[main])}"
    return label


def save_upload(data: bytes, filename: str) -> Path:
    """Keep an uploaded file under ``STUDIO_HOME/uploads/<content hash>/`` with its own (safe) name,
    so messages name the file the user chose and a re-upload reuses the copy."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name).strip("._") or "upload.zip"
    folder = settings.studio_home() / "uploads" / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        tmp = folder / f".{name}.part"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def missing_inputs(info: dict[str, Any], columns: Any) -> list[str]:
    """The model's input columns that the rows do not have (they will be treated as missing)."""
    have = set(map(str, columns))
    return [column["name"] for column in info.get("input_columns", []) if column["name"] not in have]


def first_names(names: list[str], most: int = 12) -> str:
    """The first ``most`` names, escaped, and how many more there are."""
    shown = ", ".join(map(as_text, names[:most]))
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _table_model_summary(info: dict[str, Any]) -> str:
    target = info.get("target", {}).get("name", "?")
    inputs = [column["name"] for column in info.get("input_columns", [])]
    kind = "a category" if info.get("target", {}).get("classes") else "a number"
    return f"Predicts **{as_text(target)}** ({kind}) from the columns: {first_names(inputs)}."


def model_summary(info: dict[str, Any]) -> str:
    """One line of Markdown about a bundle: what it predicts and from which columns (or what its kind's
    views say, ``model_summary(info)``: which classes a picture model knows), the names escaped."""
    from studio.app.kinds import kind_views

    try:
        summary = getattr(kind_views(str(info.get("kind"))), "model_summary", _table_model_summary)
    except (KeyError, ModuleNotFoundError):  # a kind this studio does not have: its table words
        summary = _table_model_summary
    return summary(info)


def predict_rows(bundle: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with the model's prediction columns added (``predicted_<target>``, ``probability_<class>``)."""
    predictions = bundle.predict(frame)
    kept = frame.drop(columns=[c for c in predictions.columns if c in frame.columns])
    return pd.concat([predictions, kept], axis=1)


# --------------------------------------------------------------------------- compare
def run_labels(runs: list[RunSummary]) -> dict[str, str]:
    """A unique readable label per run id (the run name, with a short id where names repeat)."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    return {
        run.run_id: run.name if counts[run.name] == 1 else f"{run.name} ({run.run_id[:6]})" for run in runs
    }


def run_settings(run: RunSummary) -> dict[str, str]:
    """A run's settings (its MLflow params) as they were used: an automatic batch size (0) is the batch
    size the run trained with (the tag ``studio.batch_size``), so two runs that trained alike read alike."""
    values = dict(run.params)
    used = run.tags.get(tracking.TAG_BATCH_SIZE)
    if values.get("training.batch_size") == "0" and used:
        values["training.batch_size"] = used
    return values


def differing_params(runs: list[RunSummary]) -> list[str]:
    """Spec keys whose values (as used: :func:`run_settings`) are not the same in all runs (the run name
    aside), in spec order."""
    used = [run_settings(run) for run in runs]
    keys: list[str] = []
    for values in used:
        keys.extend(key for key in values if key not in keys)
    return [key for key in keys if key != "name" and len({s.get(key, "") for s in used}) > 1]


def run_scores(run: RunSummary) -> dict[str, float]:
    """The scores Compare shows for a run, one per metric: its test scores (the same test rows for runs
    of one data set and split seed), and as its validation score the kept epoch's (the model it kept,
    not the last epoch's), or for a search's cross-validated trial the mean over its folds (what the
    Search page ranks it by)."""
    scores = {key: float(value) for key, value in run.metrics.items() if key.startswith("test/")}
    folds = [key for key in run.metrics if key.startswith("cv/")]
    means: dict[str, float] = {}
    if folds:
        for key, points in tracking.metric_history(run.run_id, folds).items():
            if points:
                means["val/" + key.split("/", 1)[1]] = sum(value for _, value in points) / len(points)
    for key, value in run.metrics.items():
        if key.startswith("val/"):
            kept = run.metrics.get(quality.KEPT + key.replace("/", "_", 1), value)
            scores[key] = float(means.get(key, kept))
    return scores


def metric_columns(runs: list[RunSummary]) -> list[str]:
    """Metrics worth a table column: test scores first, then the validation scores (of the kept epoch)."""
    present = {key for run in runs for key in run.metrics}
    tests = sorted(k for k in present if k.startswith("test/"))
    vals = sorted(k for k in present if k.startswith("val/"))
    return tests + vals


def curve_metrics(runs: list[RunSummary]) -> list[str]:
    """Metrics that have a curve (logged during training), the main ones first."""
    present = {key for run in runs for key in run.metrics}
    preferred = ["val/loss", "val/accuracy", "val/r2", "train/loss", "train/accuracy"]
    rest = sorted(k for k in present if k.startswith(("train/", "val/")) and k not in preferred)
    return [k for k in preferred if k in present] + rest


def runs_task(runs: list[RunSummary]) -> str:
    """The task most of these runs learn (classification when unknown)."""
    tasks = [run.task for run in runs if run.task]
    return max(set(tasks), key=tasks.count) if tasks else "classification"


@dataclass
class CompareTable:
    """One row per run: differing settings, then metrics. ``best`` maps a metric column to the label(s)
    of the run(s) with its best value."""

    frame: pd.DataFrame
    params: list[str]
    metrics: list[str]
    best: dict[str, list[str]] = field(default_factory=dict)

    def column_help(self) -> dict[str, str]:
        """A one-line explanation per column that needs one (the scores, the verdict), for the table's
        column headers."""
        keys = self.frame.attrs.get("metric_keys", {})
        found = {column: quality.metric_help(keys.get(column, column)) for column in self.metrics}
        found[VERDICT_COLUMN] = (
            "Whether the run's test scores beat a trivial guess on the same test rows (always the most "
            "common class, or always the training average), by more than luck on that many rows."
        )
        return {column: text for column, text in found.items() if text}

    def styled(self) -> Styler:
        """The table for ``st.dataframe``: best values marked with ★ and a green background."""
        keys = self.frame.attrs.get("metric_keys", {})
        styler = self.frame.style.format(_setting_text, subset=self.params)
        for column in self.metrics:
            metric = keys.get(column, column)
            styler = styler.format(lambda v, m=metric: format_metric(m, _as_float(v)), subset=[column])
            rows = self.best.get(column, [])
            if rows:
                styler = styler.format(
                    lambda v, m=metric: f"{BEST_MARK} {format_metric(m, _as_float(v))}",
                    subset=pd.IndexSlice[rows, [column]],
                )

        def highlight(frame: pd.DataFrame) -> pd.DataFrame:
            styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
            for column, rows in self.best.items():
                for row in rows:
                    styles.at[row, column] = f"background-color: {BEST_COLOR}; font-weight: bold"
            return styles

        return styler.apply(highlight, axis=None)


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"  # 0.262 for a dropout of 0.2623782158161189
    return str(value)


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_value(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def compare_table(runs: list[RunSummary], labels: dict[str, str] | None = None) -> CompareTable:
    """The compare table: a row per run (indexed by label), settings that differ, then metrics.

    The best value of each metric column (highest or lowest, by :func:`studio.core.spec.metric_mode`) is
    recorded in ``best`` (every run that reaches it, when runs tie)."""
    labels = labels or run_labels(runs)
    params = differing_params(runs)
    metrics = metric_columns(runs)
    param_names = _unique_names({key: param_label(key) for key in params})
    metric_names = _unique_names({key: sentence(metric_label(key)) for key in metrics})
    rows = []
    for run in runs:
        values, scores = run_settings(run), run_scores(run)
        row: dict[str, Any] = {param_names[key]: _param_value(values.get(key), key) for key in params}
        row.update({metric_names[key]: scores.get(key, math.nan) for key in metrics})
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index([labels[run.run_id] for run in runs], name="Run"))
    frame.insert(0, VERDICT_COLUMN, [run_verdict_title(run) for run in runs])
    for key in params:  # a setting some runs lack (a linear model's hidden layers): one type per column
        frame[param_names[key]] = _one_type(frame[param_names[key]])
    frame.attrs["metric_keys"] = {metric_names[key]: key for key in metrics}
    best: dict[str, list[str]] = {}
    for key in metrics:
        column = frame[metric_names[key]]
        finite = column[column.map(_is_value)]
        if len(runs) > 1 and not finite.empty:
            target = finite.max() if metric_mode(key) == "max" else finite.min()
            best[metric_names[key]] = [str(label) for label in finite.index[finite == target]]
    return CompareTable(
        frame=frame,
        params=[param_names[key] for key in params],
        metrics=[metric_names[key] for key in metrics],
        best=best,
    )


VERDICT_COLUMN = "Against a guess"
"""The compare table's column saying whether each run's test scores beat a trivial guess's."""


def run_verdict_title(run: RunSummary) -> str:
    """``No better than a guess`` … for an MLflow run with test and guess scores; ``–`` without."""
    found = quality.verdict(run.metrics)
    return found.title if found is not None else "–"


def worrying_runs(runs: list[RunSummary], labels: dict[str, str]) -> list[tuple[str, quality.Verdict]]:
    """``(label, verdict)`` of the runs no better, or barely better, than a guess."""
    out = []
    for run in runs:
        found = quality.verdict(run.metrics)
        if found is not None and found.worrying:
            out.append((labels[run.run_id], found))
    return out


def _unique_names(names: dict[str, str]) -> dict[str, str]:
    seen: dict[str, int] = {}
    out = {}
    for key, name in names.items():
        seen[name] = seen.get(name, 0) + 1
        out[key] = name if seen[name] == 1 else f"{name} ({key})"
    return out


def _one_type(column: pd.Series) -> pd.Series:
    """Numbers with gaps where a run lacks the setting, or else text throughout (a table column must hold
    one type to be shown)."""
    present = column[column != ""]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pd.to_numeric(column.mask(column == ""))
    return column.map(str) if len(present) < len(column) or present.map(type).nunique() > 1 else column


SETTING_WORDS = {"optimizer.name": {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}}


def _param_value(text: str | None, key: str = "") -> Any:
    """MLflow params are text; numbers become numbers so columns sort and plot as such, and a network
    or optimiser reads as the Train form names it (``Linear model``, ``AdamW``)."""
    if text is None or text == "":
        return ""
    if key == "architecture.name":
        arch = ARCHITECTURES.get(text)
        return arch.title if arch else text
    if key in SETTING_WORDS:
        return SETTING_WORDS[key].get(text, text)
    if text in ("True", "False"):
        return "yes" if text == "True" else "no"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def parallel_frame(runs: list[RunSummary], metric: str, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """A row per run with the differing settings (keys as columns, numbers as numbers) and ``metric``."""
    labels = labels or run_labels(runs)
    params = differing_params(runs)
    rows = []
    for run in runs:
        values = run_settings(run)
        row = {key: _param_value(values.get(key), key) for key in params}
        row[metric] = run_scores(run).get(metric, math.nan)
        rows.append(row)
    return pd.DataFrame(rows, index=[labels[run.run_id] for run in runs], columns=[*params, metric])


def compare_histories(
    runs: list[RunSummary], metric: str, labels: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, list[tuple[int, float]]]], dict[str, int | None]]:
    """Per run label: the history of ``metric`` (and ``epoch``, for the x axis) and steps per epoch."""
    labels = labels or run_labels(runs)
    histories, per_epoch = {}, {}
    for run in runs:
        keys = [key for key in (metric, "epoch") if key in run.metrics]
        histories[labels[run.run_id]] = tracking.metric_history(run.run_id, keys) if keys else {}
        per_epoch[labels[run.run_id]] = steps_per_epoch(run)
    return histories, per_epoch


def datasets_with_runs() -> list[tuple[Any, list[RunSummary]]]:
    """``(DatasetInfo or None, runs)`` for every data set that has runs in MLflow, newest run first."""
    from studio.data import list_datasets

    uri = settings.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []  # nothing was ever tracked: skip creating the MLflow database just to find that out
    by_id = {info.id: info for info in list_datasets()}
    grouped: dict[str, list[RunSummary]] = {}
    for run in tracking.list_runs():
        if run.dataset_id:
            grouped.setdefault(run.dataset_id, []).append(run)
    return [(by_id.get(dataset_id), runs) for dataset_id, runs in grouped.items()]


# --------------------------------------------------------------------------- pictures
MAX_PICTURES = 500


def mistake_caption(true_label: str, predicted: str, probability: float) -> str:
    """``is cat · taken for dog (87% sure)`` under a misclassified picture."""
    return f"is {true_label} · taken for {predicted} ({probability:.0%} sure)"


def mistake_gallery(run_id: str, limit: int = 24, side: int = 128) -> dict[str, Any]:
    """The misclassified test pictures of an image run, most confidently wrong first:
    ``{"pictures": [uint8 arrays], "captions": [...], "total": n, "missing": n without a file}``."""
    from studio.app import images_view

    data = images_view.test_split_predictions(run_id)
    wrong = images_view.mistakes(run_id, limit=limit)
    total = sum(1 for row in (data or {}).get("rows", []) if row["predicted"] != row["label"])
    pictures, captions, missing = [], [], 0
    for item in wrong:
        try:
            if item.path is None:
                raise ValueError(item.source)
            pictures.append(images_view.thumbnail(item.path, side))
        except ValueError:
            missing += 1
            continue
        captions.append(mistake_caption(item.true_label, item.predicted, item.probability))
    return {"pictures": pictures, "captions": captions, "total": total, "missing": missing}


def pictures_from_uploads(files: list[tuple[str, bytes]]) -> tuple[list[str], list[bytes]]:
    """``(names, bytes)`` of the pictures in uploaded files: pictures as they are, zips opened in memory
    (checked like a data set's zip: no bombs; folders and system files skipped). Raises
    :class:`DatasetError` for a zip that cannot be used."""
    import io
    import zipfile

    from studio.modalities.image.ingest import zip_pictures

    names: list[str] = []
    pictures: list[bytes] = []
    for filename, data in files:
        if not zipfile.is_zipfile(io.BytesIO(data)):
            names.append(filename)
            pictures.append(data)
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for name, picture in zip_pictures(zf, filename):
                    names.append(f"{filename}/{name}")
                    pictures.append(picture)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
            raise DatasetError(f"'{filename}' is not a readable zip file ({err}).") from None
    if len(pictures) > MAX_PICTURES:
        raise DatasetError(
            f"That is {len(pictures):,} pictures; the page predicts at most {MAX_PICTURES:,} at a time. "
            "Use `python -m studio predict` for more."
        )
    return names, pictures


def picture_results(result: pd.DataFrame, classes: list[str], target: str = "label") -> list[dict[str, Any]]:
    """One ``{"name", "predicted", "probability", "runner_up", "error"}`` per row of
    ``LoadedBundle.predict_images`` (``runner_up``: the next likeliest class and its probability)."""
    out = []
    for _, row in result.iterrows():
        error = row.get("error")
        if isinstance(error, str) and error:
            out.append(
                {
                    "name": row["image"],
                    "predicted": None,
                    "probability": None,
                    "runner_up": None,
                    "error": error,
                }
            )
            continue
        shares = sorted(
            ((float(row[f"probability_{c}"]), c) for c in classes if f"probability_{c}" in row), reverse=True
        )
        predicted = str(row[f"predicted_{target}"])
        probability = next((p for p, c in shares if c == predicted), shares[0][0] if shares else float("nan"))
        runner_up = next(((c, p) for p, c in shares if c != predicted), None)
        out.append(
            {
                "name": row["image"],
                "predicted": predicted,
                "probability": probability,
                "runner_up": runner_up,
                "error": None,
            }
        )
    return out
