"""The searches table: one row per search, in the job store's database (``STUDIO_HOME/studio.db``).

The row is what pages and the CLI read (cheaply, without optuna): the spec searched around, the
narrowed space, the score optimised, the budget and how much of it is used, the MLflow parent run, the
best trial so far, and the state (running, finished, cancelled, failed). The driver keeps it current;
the trials themselves are ordinary jobs carrying ``search_id`` and ``trial_number``.

Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from studio.core.errors import JobError
from studio.jobs import store

RUNNING, FINISHED, CANCELLED, FAILED = "running", "finished", "cancelled", "failed"
STATES = (RUNNING, FINISHED, CANCELLED, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended_at REAL,
    updated_at REAL,
    spec_json TEXT NOT NULL,
    space_json TEXT NOT NULL,
    metric TEXT NOT NULL,
    direction TEXT NOT NULL,
    budget_seconds REAL,
    max_trials INTEGER,
    seed INTEGER NOT NULL,
    used_seconds REAL NOT NULL DEFAULT 0,
    overhead_seconds REAL NOT NULL DEFAULT 0,
    overhead_cpu_seconds REAL NOT NULL DEFAULT 0,
    parent_run_id TEXT,
    experiment_id TEXT,
    best_job_id TEXT,
    best_value REAL,
    default_value REAL,
    reason TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    driver_pid INTEGER,
    submit_token TEXT UNIQUE
);
"""
# Columns added after the table's first version: (name, type), added to older stores when opened.
_ADDED_COLUMNS = (("overhead_cpu_seconds", "REAL NOT NULL DEFAULT 0"),)
_ready: set[Any] = set()


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    path = store.db_path()
    if path not in _ready:
        with store.connect():  # the jobs table first (a fresh store), with the same pragmas
            pass
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if path not in _ready:
            conn.executescript(_SCHEMA)
            have = {row["name"] for row in conn.execute("PRAGMA table_info(searches)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    with contextlib.suppress(sqlite3.OperationalError):  # another process added it
                        conn.execute(f"ALTER TABLE searches ADD COLUMN {name} {kind}")
            _ready.add(path)
        yield conn
    finally:
        conn.close()


@dataclass
class Search:
    id: str
    name: str
    state: str
    created_at: float
    spec_json: str
    space_json: str
    metric: str
    direction: str
    seed: int
    budget_seconds: float | None = None
    max_trials: int | None = None
    used_seconds: float = 0.0
    overhead_seconds: float = 0.0
    """Wall time the driver spent on its own work (sampling, the study, MLflow, polling the store)."""
    overhead_cpu_seconds: float = 0.0
    """The processor time of that work (on a busy machine the wall time also counts waiting for a core)."""
    ended_at: float | None = None
    updated_at: float | None = None
    parent_run_id: str | None = None
    experiment_id: str | None = None
    best_job_id: str | None = None
    best_value: float | None = None
    default_value: float | None = None
    reason: str | None = None
    cancel_requested: bool = False
    driver_pid: int | None = None
    submit_token: str | None = None

    @property
    def spec(self) -> Any:
        from studio.core.spec import RunSpec

        return RunSpec.from_json(self.spec_json)

    @property
    def space(self) -> Any:
        from studio.search.space import SearchSpace

        return SearchSpace.from_dict(json.loads(self.space_json))

    @property
    def is_active(self) -> bool:
        return self.state == RUNNING

    @property
    def seconds_left(self) -> float | None:
        if self.budget_seconds is None:
            return None
        return max(0.0, self.budget_seconds - self.used_seconds)

    @property
    def budget_text(self) -> str:
        """``3 min budget · 1 min left · at most 20 trials``."""
        parts = []
        if self.budget_seconds is not None:
            parts.append(f"{store.format_duration(self.budget_seconds)} budget")
            if self.is_active:
                parts.append(f"{store.format_duration(self.seconds_left or 0)} left")
        if self.max_trials:
            parts.append(f"at most {self.max_trials} trials")
        return " · ".join(parts)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Search:
        data = {key: row[key] for key in row.keys() if key in _FIELDS}  # noqa: SIM118 - a Row iterates values
        data["cancel_requested"] = bool(data.get("cancel_requested"))
        return cls(**data)


_FIELDS = {f.name for f in fields(Search)}


def new_search_id() -> str:
    return f"search-{datetime.now().strftime('%Y%m%d')}-{secrets.token_hex(3)}"


def insert_search(
    *,
    name: str,
    spec_json: str,
    space_json: str,
    metric: str,
    direction: str,
    seed: int,
    budget_seconds: float | None,
    max_trials: int | None,
    token: str | None = None,
) -> Search:
    """Store a new running search; with a ``token`` (one button press), the search it made already."""
    if token and (existing := _by_token(token)) is not None:
        return existing
    search_id = new_search_id()
    now = time.time()
    try:
        with connect() as conn:
            conn.execute(
                "INSERT INTO searches (id, name, state, created_at, updated_at, spec_json, space_json, "
                "metric, direction, seed, budget_seconds, max_trials, submit_token) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    search_id,
                    name,
                    RUNNING,
                    now,
                    now,
                    spec_json,
                    space_json,
                    metric,
                    direction,
                    seed,
                    budget_seconds,
                    max_trials,
                    token or None,
                ),
            )
    except sqlite3.IntegrityError:
        if token and (existing := _by_token(token)) is not None:
            return existing
        raise
    return get_search(search_id)


def _by_token(token: str) -> Search | None:
    with connect() as conn:
        row = conn.execute("SELECT * FROM searches WHERE submit_token = ?", (token,)).fetchone()
    return None if row is None else Search.from_row(row)


def get_search(search_id: str) -> Search:
    with connect() as conn:
        row = conn.execute("SELECT * FROM searches WHERE id = ?", (search_id,)).fetchone()
    if row is None:
        raise JobError(
            f"There is no search '{search_id}'; `python -m studio search list` shows the searches."
        )
    return Search.from_row(row)


def list_searches(limit: int | None = None) -> list[Search]:
    """Searches newest first (none when no job store exists yet)."""
    if not store.db_path().is_file():
        return []
    sql = "SELECT * FROM searches ORDER BY seq DESC" + (" LIMIT ?" if limit else "")
    with connect() as conn:
        return [Search.from_row(row) for row in conn.execute(sql, (limit,) if limit else ())]


def update(search_id: str, **values: Any) -> None:
    """Set columns of a search's row (the driver's bookkeeping)."""
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"unknown search fields: {sorted(unknown)}")
    values["updated_at"] = time.time()
    assignments = ", ".join(f"{key} = ?" for key in values)
    with connect() as conn:
        conn.execute(f"UPDATE searches SET {assignments} WHERE id = ?", (*values.values(), search_id))


def add_time(search_id: str, used: float, overhead: float, overhead_cpu: float = 0.0) -> None:
    """Count ``used`` seconds of the budget (and ``overhead`` of them spent on the search's own work,
    ``overhead_cpu`` of processor time)."""
    with connect() as conn:
        conn.execute(
            "UPDATE searches SET used_seconds = used_seconds + ?, overhead_seconds = overhead_seconds + ?, "
            "overhead_cpu_seconds = overhead_cpu_seconds + ?, updated_at = ? WHERE id = ?",
            (used, overhead, overhead_cpu, time.time(), search_id),
        )


_kept: dict[Any, sqlite3.Connection] = {}


def _kept_connection() -> sqlite3.Connection:
    """One connection kept open for this process's store (the driver's every pass): opening one costs
    more than the pass's queries. Autocommit, so it holds no lock between statements."""
    path = store.db_path()
    conn = _kept.get(path)
    if conn is None:
        with connect():  # the tables exist (a fresh store)
            pass
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        _kept[path] = conn
    return conn


def account(
    search_id: str, used: float = 0.0, overhead: float = 0.0, overhead_cpu: float = 0.0
) -> tuple[Search, str]:
    """The driver's every pass, on one kept connection: count time as :func:`add_time` does (when there
    is any to count), then read the search's row and a digest of its trials' states (it changes whenever
    a trial is made, starts, ends or is asked to stop, not on progress), so a pass where nothing changed
    can stop there."""
    conn = _kept_connection()
    if used or overhead or overhead_cpu:
        conn.execute(
            "UPDATE searches SET used_seconds = used_seconds + ?, overhead_seconds = overhead_seconds + ?, "
            "overhead_cpu_seconds = overhead_cpu_seconds + ?, updated_at = ? WHERE id = ?",
            (used, overhead, overhead_cpu, time.time(), search_id),
        )
    row = conn.execute("SELECT * FROM searches WHERE id = ?", (search_id,)).fetchone()
    digest = conn.execute(
        "SELECT group_concat(id || ':' || state || ':' || COALESCE(trial_state, '') || ':' || "
        "cancel_requested, ',') FROM (SELECT * FROM jobs WHERE search_id = ? ORDER BY seq)",
        (search_id,),
    ).fetchone()[0]
    if row is None:
        raise JobError(f"There is no search '{search_id}'.")
    return Search.from_row(row), digest or ""


def request_cancel(search_id: str) -> Search:
    search = get_search(search_id)
    if not search.is_active:
        raise JobError(f"Search {search_id} has already ended ({search.state}); there is nothing to cancel.")
    update(search_id, cancel_requested=1)
    return get_search(search_id)


def reopen(search_id: str, *, more_seconds: float | None, more_trials: int | None) -> Search:
    """Give a search more time (or trials) and mark it running again, so its driver goes on."""
    search = get_search(search_id)
    if search.cancel_requested and search.is_active:
        raise JobError(f"Search {search_id} is being cancelled; wait for it to stop, then extend it.")
    budget = search.budget_seconds
    trials = search.max_trials
    if more_seconds:
        budget = max(budget or 0.0, search.used_seconds) + more_seconds
        trials = None  # more time means as many trials as fit in it
    if more_trials:
        from studio.jobs.store import search_jobs

        trials = max(trials or 0, len(search_jobs(search_id))) + more_trials
    update(
        search_id,
        state=RUNNING,
        budget_seconds=budget,
        max_trials=trials,
        ended_at=None,
        reason=None,
        cancel_requested=0,
    )
    return get_search(search_id)
