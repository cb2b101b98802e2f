"""The job store: one SQLite table in ``STUDIO_HOME/studio.db`` shared by pages, CLI, scheduler and workers.

Every process opens its own short-lived connection (WAL mode, a generous busy timeout), so Streamlit
threads, several server processes, the scheduler daemon and the workers can all read and write at once.
State changes are conditional updates (``... WHERE state = 'queued'``) inside ``BEGIN IMMEDIATE``
transactions, so a job is claimed, finished or cancelled exactly once however many processes race.

Only the standard library and the spec are imported here: pages import this module.
"""

from __future__ import annotations

import fcntl
import json
import math
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core import settings
from studio.core.errors import JobError
from studio.engine.checkpoints import Checkpoint, latest_checkpoint

if TYPE_CHECKING:
    from studio.core.spec import RunSpec

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
INTERRUPTED = "interrupted"
"""Its worker died (killed, or the machine restarted) after saving a checkpoint: it can resume."""
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
ACTIVE_STATES = (QUEUED, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
RESUMABLE_STATES = (INTERRUPTED, CANCELLED)
"""States a job can be resumed from, when it has a checkpoint (:func:`latest_checkpoint`)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    spec_json TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    device_request TEXT NOT NULL,
    device TEXT,
    pid INTEGER,
    pid_create_time REAL,
    epoch INTEGER,  -- 1-based, as training reports it
    max_epochs INTEGER,
    step INTEGER,
    total_steps INTEGER,
    fraction REAL,
    eta_seconds REAL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    test_metrics_json TEXT NOT NULL DEFAULT '{}',
    updated_at REAL,
    mlflow_run_id TEXT,
    experiment_id TEXT,
    reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_requested_at REAL,
    bundle_path TEXT,
    submit_token TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
"""
# Columns added after the first release: (name, type) added to older stores when they are opened.
_ADDED_COLUMNS = (
    ("submit_token", "TEXT"),
    ("note", "TEXT"),
    # A search's trial (studio.search): its search, its number there, and how the search ended it.
    ("search_id", "TEXT"),
    ("trial_number", "INTEGER"),
    ("trial_state", "TEXT"),
    # What its scores mean (studio.core.quality): the kept epoch, the trivial guess's test scores.
    ("quality_json", "TEXT"),
    # Work on a trained run's model (studio.engine.analysis): what to do, the run it works on, options.
    ("action", "TEXT"),
    ("parent_id", "TEXT"),
    ("options_json", "TEXT"),
)
_INDEXES = "CREATE UNIQUE INDEX IF NOT EXISTS jobs_submit_token ON jobs (submit_token);"

_ready: set[Path] = set()


def db_path() -> Path:
    """The job database: ``STUDIO_HOME/studio.db``."""
    return settings.studio_home() / "studio.db"


def job_dir(job_id: str) -> Path:
    """The job's own folder (worker log, model bundle), created on demand."""
    folder = settings.studio_home() / "jobs" / job_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_path(job_id: str) -> Path:
    return job_dir(job_id) / "worker.log"


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT_FOLDER = "checkpoints"


def checkpoint_dir(job_id: str) -> Path:
    """Where a job's checkpoints live: ``STUDIO_HOME/jobs/<id>/checkpoints`` (not created here)."""
    return settings.studio_home() / "jobs" / job_id / CHECKPOINT_FOLDER


def job_checkpoint(job_id: str) -> Checkpoint | None:
    """The job's latest checkpoint, if it saved one."""
    return latest_checkpoint(checkpoint_dir(job_id))


def remove_checkpoints(job_id: str) -> None:
    """Delete a job's checkpoints (after it succeeded or failed for good, or when it is deleted)."""
    shutil.rmtree(checkpoint_dir(job_id), ignore_errors=True)


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """A fresh autocommit connection; use :func:`transaction` for read-modify-write."""
    path = db_path()
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if path not in _ready:
            _set_up(conn, path)
            _ready.add(path)
        conn.execute("PRAGMA synchronous = NORMAL")
        yield conn
    finally:
        conn.close()


def _set_up(conn: sqlite3.Connection, path: Path) -> None:
    """Make or update the store once per process, one process at a time.

    Switching a new file to WAL needs the file to itself, and SQLite answers "database is
    locked" at once, without waiting, when several processes make the store together (four
    browser tabs submitting at the first start). An advisory lock on a file beside the store
    queues them; once the store is in WAL mode, later processes only read that it is.
    """
    with open(path.with_name(path.name + ".setup-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            _add_columns(conn)
            conn.executescript(_INDEXES)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _add_columns(conn: sqlite3.Connection) -> None:
    """Bring a store made by an older studio up to date (new columns are nullable)."""
    have = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as err:  # another process added it just now
                if "duplicate column" not in str(err):
                    raise


@contextmanager
def transaction() -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front, so checks and updates are atomic."""
    with connect() as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


@dataclass
class Job:
    """One row of the job store. ``spec`` is parsed on first use."""

    id: str
    name: str
    state: str
    created_at: float
    spec_json: str
    dataset_id: str
    device_request: str
    started_at: float | None = None
    ended_at: float | None = None
    device: str | None = None
    pid: int | None = None
    pid_create_time: float | None = None
    epoch: int | None = None
    max_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    fraction: float | None = None
    eta_seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    updated_at: float | None = None
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    reason: str | None = None  # why it failed or was cancelled; for a succeeded job, a note on how it ended
    cancel_requested: bool = False
    cancel_requested_at: float | None = None
    bundle_path: str | None = None
    submit_token: str | None = None
    """The token of the page press (or request) that made the job: the same token never makes two jobs."""
    note: str | None = None
    """What happened on the way, in plain sentences (resumed, retried with a smaller batch); any state."""
    search_id: str | None = None
    """The search this job is a trial of (``studio.search``), with its ``trial_number`` there."""
    trial_number: int | None = None
    trial_state: str | None = None
    """How the search counted the trial: ``pruned`` (stopped early by the search), ``complete``, ``failed``."""
    quality: dict[str, float] = field(default_factory=dict)
    """What its scores mean (:mod:`studio.core.quality`): the kept epoch (``kept/*``) and the trivial
    guess's scores on the same test rows (``baseline/*``)."""
    action: str | None = None
    """None for a training job; otherwise the work it does on the model of job ``parent_id``
    (``explain``, ``compress``: :mod:`studio.engine.analysis`), with ``options``."""
    parent_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> dict[str, float]:
        """The test scores and what they mean, in one mapping (what :func:`studio.core.quality.verdict`
        reads)."""
        return {**self.test_metrics, **self.quality}

    @cached_property
    def spec(self) -> RunSpec:
        from studio.core.spec import RunSpec

        return RunSpec.from_json(self.spec_json)

    @property
    def is_active(self) -> bool:
        """Queued or running: the job may still change."""
        return self.state in ACTIVE_STATES

    @property
    def log_path(self) -> Path:
        return log_path(self.id)

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The latest saved training state (looked up on disk each time)."""
        return job_checkpoint(self.id)

    @property
    def can_resume(self) -> bool:
        """Interrupted or cancelled, with a checkpoint to continue from."""
        return self.state in RESUMABLE_STATES and self.checkpoint is not None

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far)."""
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    @property
    def progress_text(self) -> str:
        """One short line for tables, e.g. ``epoch 3/20 · 15% · about 40 s left``."""
        if self.state == QUEUED:
            return "waiting for a free device"
        if self.state == RUNNING and self.epoch is None:
            return "cancelling" if self.cancel_requested else "starting"
        parts = []
        if self.epoch is not None and self.max_epochs:
            parts.append(f"epoch {self.epoch}/{self.max_epochs}")
        if self.fraction is not None:
            parts.append(f"{self.fraction:.0%}")
        if self.state == RUNNING:
            if self.cancel_requested:
                parts.append("cancelling")
            elif self.eta_seconds is not None:
                parts.append(f"about {format_duration(self.eta_seconds)} left")
            else:  # the time left is measured from this run's epochs: none has ended yet
                parts.append("measuring the time left…")
        elif self.state in FINAL_STATES:
            parts.append(self.state)
        return " · ".join(parts)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        columns = row.keys()  # iterating a Row yields values, not names
        data = {key: row[key] for key in columns if key in _FIELD_NAMES}
        data["metrics"] = json.loads(row["metrics_json"] or "{}")
        data["test_metrics"] = json.loads(row["test_metrics_json"] or "{}")
        data["quality"] = json.loads(row["quality_json"] or "{}") if "quality_json" in columns else {}
        data["cancel_requested"] = bool(row["cancel_requested"])
        data["options"] = json.loads(row["options_json"] or "{}") if "options_json" in columns else {}
        return cls(**data)


_FIELD_NAMES = {f.name for f in fields(Job)}


def format_duration(seconds: float) -> str:
    """``40 s``, ``5 min``, ``1 h 20 min``: rounded the way a person reads a clock."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def new_job_id(now: float | None = None) -> str:
    """A short readable id: ``job-20261125-0a1b2c``."""
    day = datetime.fromtimestamp(now or time.time()).strftime("%Y%m%d")
    return f"job-{day}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------- writes
def insert_job(
    spec: RunSpec, token: str | None = None, *, search_id: str | None = None, trial_number: int | None = None
) -> Job:
    """Store a new queued job for ``spec`` (:func:`studio.jobs.submit_job` names it first).

    With a ``token`` (one press of a page's Train button), a job already stored with that token is
    returned instead of a new one, so a double click or a resent request makes one job. A search's trial
    is stored with its ``search_id`` and ``trial_number`` in the same insert (its worker must see them)."""
    if token and (existing := _by_token(token)) is not None:
        return existing
    now = time.time()
    for _ in range(20):
        job_id = new_job_id(now)
        try:
            with connect() as conn:
                conn.execute(
                    "INSERT INTO jobs (id, name, state, created_at, spec_json, dataset_id, device_request, "
                    "submit_token, search_id, trial_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        spec.name,
                        QUEUED,
                        now,
                        spec.to_json(),
                        spec.data.dataset_id,
                        spec.training.device,
                        token or None,
                        search_id,
                        trial_number,
                    ),
                )
        except sqlite3.IntegrityError:
            if token and (existing := _by_token(token)) is not None:
                return existing  # another process stored this press a moment ago
            continue  # the 3 random bytes collided with an existing id the same day
        return get_job(job_id)
    raise JobError("Could not find a free job id; try again.")


def insert_action_job(parent: Job, action: str, options: dict[str, Any] | None = None) -> Job:
    """Queue ``action`` (``explain``, ``compress``) on the model of the trained job ``parent``: a job of
    its own, on a CPU slot, carrying the parent's spec (its data set and split). While one
    is queued or running for the same parent and action, that one is returned (a double click makes one)."""
    now = time.time()
    with transaction() as conn:
        row = conn.execute(
            "SELECT * FROM jobs WHERE parent_id = ? AND action = ? AND state IN (?, ?) ORDER BY seq DESC",
            (parent.id, action, QUEUED, RUNNING),
        ).fetchone()
        if row is not None:
            return Job.from_row(row)
        job_id = new_job_id(now)
        while conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None:
            job_id = new_job_id(now)
        conn.execute(
            "INSERT INTO jobs (id, name, state, created_at, spec_json, dataset_id, device_request, "
            "action, parent_id, options_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                f"{parent.name} · {action}",
                QUEUED,
                now,
                parent.spec_json,
                parent.dataset_id,
                "cpu",
                action,
                parent.id,
                json.dumps(options or {}),
            ),
        )
    return get_job(job_id)


def action_jobs(parent_id: str, action: str | None = None) -> list[Job]:
    """The jobs that worked on ``parent_id``'s model (``action``: only those), newest first."""
    sql, params = "SELECT * FROM jobs WHERE parent_id = ?", [parent_id]
    if action:
        sql += " AND action = ?"
        params.append(action)
    with connect() as conn:
        return [Job.from_row(row) for row in conn.execute(sql + " ORDER BY seq DESC", params)]


def claim_job(job_id: str, device: str) -> bool:
    """Atomically move a queued job to running on ``device``; False if it was not queued or the slot is taken."""
    now = time.time()
    with transaction() as conn:
        busy = conn.execute(
            "SELECT 1 FROM jobs WHERE state = ? AND device = ? LIMIT 1", (RUNNING, device)
        ).fetchone()
        if busy:
            return False
        cursor = conn.execute(
            "UPDATE jobs SET state = ?, device = ?, started_at = ?, updated_at = ? WHERE id = ? AND state = ?",
            (RUNNING, device, now, now, job_id, QUEUED),
        )
        return cursor.rowcount == 1


def set_worker(job_id: str, pid: int | None, create_time: float | None) -> None:
    """Record the process that runs a job (its start time tells a reused pid apart)."""
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET pid = ?, pid_create_time = ?, updated_at = ? WHERE id = ? AND state = ?",
            (pid, create_time, time.time(), job_id, RUNNING),
        )


def set_run(job_id: str, run_id: str, experiment_id: str) -> None:
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET mlflow_run_id = ?, experiment_id = ?, updated_at = ? WHERE id = ?",
            (run_id, experiment_id, time.time(), job_id),
        )


def set_progress(
    job_id: str,
    *,
    epoch: int,
    max_epochs: int,
    step: int,
    total_steps: int,
    fraction: float,
    eta_seconds: float | None,
    metrics: dict[str, float],
) -> bool:
    """Store a running job's progress (also its heartbeat). Returns whether cancellation was requested."""
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET epoch = ?, max_epochs = ?, step = ?, total_steps = ?, fraction = ?, "
            "eta_seconds = ?, metrics_json = ?, updated_at = ? WHERE id = ? AND state = ?",
            (
                epoch,
                max_epochs,
                step,
                total_steps,
                fraction,
                eta_seconds,
                _dump(metrics),
                time.time(),
                job_id,
                RUNNING,
            ),
        )
        row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


def cancel_requested(job_id: str) -> bool:
    with connect() as conn:
        row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


def request_cancel(job_id: str) -> Job:
    """Cancel a queued job at once, or flag a running one for its worker. Finished jobs are an error."""
    now = time.time()
    with transaction() as conn:
        job = _get(conn, job_id)
        if job.state == QUEUED:
            conn.execute(
                "UPDATE jobs SET state = ?, ended_at = ?, updated_at = ?, cancel_requested = 1, "
                "cancel_requested_at = ?, reason = ? WHERE id = ?",
                (CANCELLED, now, now, now, "Cancelled before it started.", job_id),
            )
        elif job.state == RUNNING:
            if not job.cancel_requested:
                conn.execute(
                    "UPDATE jobs SET cancel_requested = 1, cancel_requested_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, job_id),
                )
        else:
            raise JobError(f"Job {job_id} has already ended ({job.state}); there is nothing to cancel.")
        return _get(conn, job_id)


def finish_job(
    job_id: str,
    state: str,
    *,
    reason: str | None = None,
    test_metrics: dict[str, float] | None = None,
    bundle_path: str | None = None,
    only_pid: int | None = None,
    quality: dict[str, float] | None = None,
) -> bool:
    """End an active job as succeeded, failed or cancelled; False if it had already ended.

    ``only_pid`` makes it conditional on the job still being run by that process (used when cleaning up
    after a dead worker, so a job that its worker has just finished is left alone).
    """
    if state not in FINAL_STATES:
        raise ValueError(f"not a final state: {state}")
    now = time.time()
    sql = (
        "UPDATE jobs SET state = ?, ended_at = ?, updated_at = ?, reason = ?, "
        "test_metrics_json = COALESCE(?, test_metrics_json), bundle_path = COALESCE(?, bundle_path), "
        "quality_json = COALESCE(?, quality_json) WHERE id = ? AND state IN (?, ?)"
    )
    params: list[Any] = [
        state,
        now,
        now,
        reason,
        _dump(test_metrics) if test_metrics is not None else None,
        bundle_path,
        _dump(quality) if quality is not None else None,
        job_id,
        QUEUED,
        RUNNING,
    ]
    if only_pid is not None:
        sql += " AND pid = ?"
        params.append(only_pid)
    with connect() as conn:
        return conn.execute(sql, params).rowcount == 1


def delete_job(job_id: str) -> None:
    """Remove a queued or finished job from the store (a running one must be cancelled first), with its
    checkpoints."""
    with transaction() as conn:
        job = _get(conn, job_id)
        if job.state == RUNNING:
            raise JobError(f"Job {job_id} is running; cancel it first, then delete it.")
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    remove_checkpoints(job_id)


def add_note(job_id: str, sentence: str) -> None:
    """Append a plain sentence to the job's note (what happened on the way)."""
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET note = CASE WHEN note IS NULL OR note = '' THEN ? ELSE note || ' ' || ? END, "
            "updated_at = ? WHERE id = ?",
            (sentence, sentence, time.time(), job_id),
        )


def set_trial_state(job_id: str, trial_state: str) -> None:
    """Record how a search counted its trial (``pruned``, ``complete``, ``failed``)."""
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET trial_state = ?, updated_at = ? WHERE id = ?", (trial_state, time.time(), job_id)
        )


def set_test_metrics(
    job_id: str, test_metrics: dict[str, float], quality: dict[str, float] | None = None
) -> None:
    """Record the test scores of an ended job tested afterwards (a search's chosen trial), and add
    ``quality`` (the trivial guess's scores on the same rows) to what it already has."""
    with transaction() as conn:
        row = conn.execute("SELECT quality_json FROM jobs WHERE id = ?", (job_id,)).fetchone()
        merged = {**json.loads((row["quality_json"] if row else None) or "{}"), **(quality or {})}
        conn.execute(
            "UPDATE jobs SET test_metrics_json = ?, quality_json = ?, updated_at = ? WHERE id = ?",
            (_dump(test_metrics), _dump(merged), time.time(), job_id),
        )


def requeue_to_resume(job_id: str) -> Job:
    """Queue an interrupted or cancelled job again; its worker continues from the latest checkpoint, in
    the same MLflow run. :class:`JobError` (one plain sentence) when the job cannot be resumed."""
    now = time.time()
    with transaction() as conn:
        job = _get(conn, job_id)
        if job.state in ACTIVE_STATES:
            doing = "waiting for a device" if job.state == QUEUED else "training"
            raise JobError(f"Job {job_id} is {doing} already; there is nothing to resume.")
        if job.state == SUCCEEDED:
            raise JobError(f"Job {job_id} has finished; there is nothing to resume.")
        if job.state == FAILED:
            raise JobError(
                f"Job {job_id} failed, and a failed run cannot be resumed: fix what its reason says and "
                "start it again (Train page or `python -m studio jobs submit`)."
            )
        if job_checkpoint(job_id) is None or not job.mlflow_run_id:
            raise JobError(
                f"Job {job_id} stopped before it finished its first epoch, so no progress was saved to "
                "resume from; start it again (Train page or `python -m studio jobs submit`)."
            )
        conn.execute(
            "UPDATE jobs SET state = ?, ended_at = NULL, reason = NULL, cancel_requested = 0, "
            "cancel_requested_at = NULL, pid = NULL, pid_create_time = NULL, device = NULL, "
            "eta_seconds = NULL, updated_at = ? WHERE id = ? AND state IN (?, ?)",
            (QUEUED, now, job_id, *RESUMABLE_STATES),
        )
        return _get(conn, job_id)


# --------------------------------------------------------------------------- reads
def get_job(job_id: str) -> Job:
    with connect() as conn:
        return _get(conn, job_id)


def list_jobs(
    limit: int | None = None, states: tuple[str, ...] | list[str] | None = None, actions: bool = False
) -> list[Job]:
    """Training jobs newest first, optionally only those in ``states`` (``actions``: the jobs that work
    on a trained model too, :func:`insert_action_job`)."""
    sql = "SELECT * FROM jobs WHERE 1 = 1" if actions else "SELECT * FROM jobs WHERE action IS NULL"
    params: list[Any] = []
    if isinstance(states, str):
        states = [states]
    if states:
        unknown = set(states) - set(STATES)
        if unknown:
            raise JobError(f"Unknown job state '{sorted(unknown)[0]}'; choose from: {', '.join(STATES)}.")
        sql += f" AND state IN ({', '.join('?' * len(states))})"
        params.extend(states)
    sql += " ORDER BY seq DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    with connect() as conn:
        return [Job.from_row(row) for row in conn.execute(sql, params)]


def search_jobs(search_id: str) -> list[Job]:
    """A search's trials, in the order they were made."""
    with connect() as conn:
        rows = conn.execute("SELECT * FROM jobs WHERE search_id = ? ORDER BY seq", (search_id,)).fetchall()
    return [Job.from_row(row) for row in rows]


def queued_jobs() -> list[Job]:
    """Queued jobs, oldest first (the order they run in)."""
    with connect() as conn:
        rows = conn.execute("SELECT * FROM jobs WHERE state = ? ORDER BY seq", (QUEUED,)).fetchall()
    return [Job.from_row(row) for row in rows]


def active_jobs_using(dataset_id: str) -> list[Job]:
    """Queued and running jobs that train on this data set, oldest first (none when no job was ever
    stored: the database is not created just to ask)."""
    if not db_path().is_file():
        return []
    with connect() as conn:
        rows = conn.execute(
            "SELECT * FROM jobs WHERE dataset_id = ? AND state IN (?, ?) ORDER BY seq",
            (dataset_id, QUEUED, RUNNING),
        ).fetchall()
    return [Job.from_row(row) for row in rows]


def count_active() -> int:
    with connect() as conn:
        return conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", (QUEUED, RUNNING)).fetchone()[
            0
        ]


def _by_token(token: str) -> Job | None:
    with connect() as conn:
        row = conn.execute("SELECT * FROM jobs WHERE submit_token = ?", (token,)).fetchone()
    return None if row is None else Job.from_row(row)


def _get(conn: sqlite3.Connection, job_id: str) -> Job:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobError(f"There is no job '{job_id}'; `python -m studio jobs list` shows the jobs.")
    return Job.from_row(row)


def _dump(metrics: dict[str, Any] | None) -> str:
    """Metrics as JSON: numbers only, and only finite ones (JSON has no NaN or infinity)."""
    clean = {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # a non-numeric entry is not a metric; keep the rest
        if math.isfinite(number):
            clean[str(key)] = number
    return json.dumps(clean, allow_nan=False)
