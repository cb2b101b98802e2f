"""Every MLflow convention in one place: store location, experiment naming, tags, metric names and
the queries the pages use. ``mlflow`` is imported lazily so importing this module is cheap.

Conventions
- one experiment per data set, named ``studio/<dataset id>``;
- params: the flattened run spec (``optimizer.learning_rate`` …);
- metrics: ``train/loss`` every few steps, ``val/*`` every epoch, ``test/*`` at the end, all with the
  trainer's global step as MLflow step; ``epoch`` is logged beside each validation so curves can be
  drawn per epoch;
- tags: ``studio.*`` below; a failed run carries ``studio.failure_reason``; a finished run that did
  not end plainly (its loss became NaN and an earlier epoch was kept) carries ``studio.note``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from studio.core import settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from studio.core.spec import RunSpec

TAG_JOB = "studio.job_id"
TAG_DATASET = "studio.dataset_id"
TAG_TASK = "studio.task"
TAG_ARCH = "studio.architecture"
TAG_TARGET = "studio.target"
TAG_STEPS_PER_EPOCH = "studio.steps_per_epoch"
TAG_DEVICE = "studio.device"
TAG_FAILURE = "studio.failure_reason"
TAG_NOTE = "studio.note"
TAG_VERDICT = "studio.verdict"  # the test scores against a trivial guess's: "No better than a guess" …
TAG_VERDICT_REASON = "studio.verdict_reason"  # the verdict's sentence (studio.core.quality)
TAG_BUNDLE = "studio.bundle_artifact"
TAG_KIND = "studio.kind"
# What a run was given, for reading in the MLflow UI (the studio's pages read the spec artifact instead).
TAG_ROWS = "studio.rows"
TAG_BATCH_SIZE = "studio.batch_size"
TAG_ACCUMULATE = "studio.accumulate_grad_batches"
TAG_IGNORED_COLUMNS = "studio.ignored_columns"
TAG_IMAGE_SIZE = "studio.image_size"
TAG_PRETRAINED_FROM = "studio.pretrained_from"  # the ImageNet weights a picture run started from
TAG_PRECISION = "studio.precision"
TAG_TRAINABLE_SHARE = "studio.trainable_share"

# MLflow 3's UI opens an experiment in its GenAI view (traces, "Detect Issues") unless told otherwise:
# the experiment tag below says these are model-training experiments (read when the UI has no
# GenAI / Model-training switch), and every link the studio gives carries the switch's own URL
# parameter, which decides when the switch is there (MLflow 3.17 ignores the tag then; its default is
# GenAI). Checked in Chromium by tests/e2e/test_browser.py.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
MLFLOW_UI_VIEW = "workflowType=machine_learning"

BUNDLE_ARTIFACT = "bundle/model.zip"
SPEC_ARTIFACT = "spec.json"
PROFILE_ARTIFACT = "data_profile.json"
CONFUSION_ARTIFACT = "confusion_matrix.json"  # picture runs: the test split's confusion matrix
PREDICTIONS_ARTIFACT = "test_predictions.json"  # picture runs: each test picture's prediction
TEXT_PREDICTIONS_ARTIFACT = "text_predictions.json"  # text runs: the test rows the model got most wrong


@lru_cache(maxsize=8)
def _client_for(uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    # MLflow creates its tables on first use; two workers starting together on a new store would both
    # try (and one fails with "duplicate column" or an alembic error). Do it once, under a file lock.
    import fcntl
    from pathlib import Path

    lock_path = Path(uri.removeprefix("sqlite:///")).with_suffix(".init.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow_client = MlflowClient(tracking_uri=uri)
            mlflow_client.search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return mlflow_client


def client() -> MlflowClient:
    """A client on the configured store (``MLFLOW_TRACKING_URI`` or the embedded SQLite store)."""
    return _client_for(settings.tracking_uri())


def experiment_name(dataset_id: str) -> str:
    return f"studio/{dataset_id}"


def ensure_experiment(dataset_id: str) -> str:
    """The id of the data set's experiment, created (with artifacts under ``mlruns/artifacts``) if new."""
    mlflow_client = client()
    name = experiment_name(dataset_id)
    existing = mlflow_client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made by an older studio
            mlflow_client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return existing.experiment_id
    location = None
    if settings.tracking_uri().startswith("sqlite:"):
        location = (settings.artifact_root() / dataset_id).as_uri()
    try:
        return mlflow_client.create_experiment(
            name,
            artifact_location=location,
            tags={TAG_DATASET: dataset_id, EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    except Exception:  # another process created it between our look-up and create
        existing = mlflow_client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def start_run(
    spec: RunSpec, *, job_id: str | None, extra_tags: dict[str, str] | None = None
) -> tuple[str, str]:
    """Create the run with the spec as params and the studio's tags; returns ``(run_id, experiment_id)``."""
    from mlflow.entities import Param

    from studio.core.spec import flatten

    experiment_id = ensure_experiment(spec.data.dataset_id)
    tags = {
        TAG_DATASET: spec.data.dataset_id,
        TAG_TASK: spec.task,
        TAG_ARCH: spec.architecture.name,
        TAG_TARGET: spec.data.target,
        TAG_KIND: "tabular",
        "mlflow.runName": spec.name or spec.data.dataset_id,  # callers pass the readable name
        **({TAG_JOB: job_id} if job_id else {}),
        **(extra_tags or {}),
    }
    mlflow_client = client()
    run = mlflow_client.create_run(experiment_id, run_name=tags["mlflow.runName"], tags=tags)
    params = [Param(key, value[:6000]) for key, value in flatten(spec).items()]
    for start in range(0, len(params), 100):
        mlflow_client.log_batch(run.info.run_id, params=params[start : start + 100])
    return run.info.run_id, experiment_id


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def end_run(run_id: str, status: str, reason: str | None = None) -> None:
    """End a run as ``FINISHED``, ``FAILED`` (with the reason as a tag) or ``KILLED``."""
    if reason:
        set_tags(run_id, {TAG_FAILURE: reason[:5000]})
    client().set_terminated(run_id, status=status)


def reopen_run(run_id: str) -> str:
    """Mark an ended run RUNNING again to continue it (a resumed job): its failure reason goes, its
    params, tags and metrics stay. Returns its experiment id."""
    mlflow_client = client()
    run = mlflow_client.get_run(run_id)
    mlflow_client.update_run(run_id, status="RUNNING")
    if TAG_FAILURE in run.data.tags:
        mlflow_client.delete_tag(run_id, TAG_FAILURE)
    return run.info.experiment_id


def logged_steps(run_id: str) -> dict[str, int]:
    """``metric -> the last step it was logged at`` in this run (what a resumed run must not log again)."""
    mlflow_client = client()
    keys = list(mlflow_client.get_run(run_id).data.metrics)
    return {
        key: max((point.step for point in mlflow_client.get_metric_history(run_id, key)), default=-1)
        for key in keys
    }


class MetricBuffer:
    """Collects metrics and writes them with ``log_batch`` on a background thread, so the training
    loop never waits for SQLite. :meth:`close` waits until everything is written (and re-raises a
    write error there, not in the middle of training).

    ``logged_through`` (``metric -> step``, for a resumed run) drops points at or before the step a
    metric was already logged at, so continuing a run never logs a point twice."""

    def __init__(self, run_id: str, logged_through: dict[str, int] | None = None):
        import queue
        import threading

        self.run_id = run_id
        self.logged_through = dict(logged_through or {})
        self.pending: list[Any] = []
        self._queue: queue.Queue[list[Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def add(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        done = self.logged_through
        self.pending.extend(
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if not done or step > done.get(key, -1)
        )

    def flush(self) -> None:
        """Hand the collected metrics to the writer thread (returns at once)."""
        if self.pending:
            batch, self.pending = self.pending, []
            self._queue.put(batch)

    def close(self) -> None:
        """Write everything still pending and stop the writer thread."""
        self.flush()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write_loop(self) -> None:
        mlflow_client = client()
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None:
                continue
            try:
                for start in range(0, len(batch), 1000):
                    mlflow_client.log_batch(self.run_id, metrics=batch[start : start + 1000])
            except BaseException as err:  # reported by close()
                self._error = err


# --------------------------------------------------------------------------- queries for the pages
@dataclass(frozen=True)
class RunSummary:
    run_id: str
    experiment_id: str
    name: str
    status: str
    start_time: int | None
    end_time: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]

    @property
    def dataset_id(self) -> str | None:
        return self.tags.get(TAG_DATASET)

    @property
    def task(self) -> str | None:
        return self.tags.get(TAG_TASK)


def _summary(run: Any) -> RunSummary:
    return RunSummary(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        name=run.info.run_name or run.info.run_id[:8],
        status=run.info.status,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def get_run(run_id: str) -> RunSummary:
    return _summary(client().get_run(run_id))


def list_runs(dataset_id: str | None = None, max_results: int = 200) -> list[RunSummary]:
    """Runs of one data set (or of every studio experiment), newest first."""
    mlflow_client = client()
    if dataset_id is not None:
        experiment = mlflow_client.get_experiment_by_name(experiment_name(dataset_id))
        ids = [experiment.experiment_id] if experiment else []
    else:
        ids = [
            e.experiment_id for e in mlflow_client.search_experiments(filter_string="name LIKE 'studio/%'")
        ]
    if not ids:
        return []
    runs = mlflow_client.search_runs(ids, max_results=max_results, order_by=["attributes.start_time DESC"])
    return [_summary(run) for run in runs]


def metric_history(run_id: str, keys: list[str] | None = None) -> dict[str, list[tuple[int, float]]]:
    """``metric -> [(step, value), ...]`` sorted by step, for the curves."""
    mlflow_client = client()
    if keys is None:
        keys = list(mlflow_client.get_run(run_id).data.metrics)
    history = {}
    for key in keys:
        points = mlflow_client.get_metric_history(run_id, key)
        history[key] = sorted((p.step, p.value) for p in points)
    return history


def download_bundle(run_id: str, dest_dir: str) -> str:
    """Download the run's model bundle zip; returns its local path."""
    return client().download_artifacts(run_id, BUNDLE_ARTIFACT, dest_dir)


def mlflow_ui_home_url(base_url: str) -> str:
    """The MLflow UI's list of experiments, in its model-training view."""
    return f"{base_url.rstrip('/')}/#/experiments?{MLFLOW_UI_VIEW}"


def mlflow_ui_run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MLFLOW_UI_VIEW}"


def mlflow_ui_compare_url(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    import json
    from urllib.parse import quote

    runs = quote(json.dumps(run_ids))
    experiments = quote(json.dumps([experiment_id]))
    return f"{base_url.rstrip('/')}/#/compare-runs?runs={runs}&experiments={experiments}&{MLFLOW_UI_VIEW}"


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
