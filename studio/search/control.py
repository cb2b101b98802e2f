"""Starting, following, cancelling and extending searches: what the CLI and the pages call.

A search runs in its own background process, the driver (``python -m studio.search.driver ID``,
:mod:`studio.search.driver`), started here like the job scheduler: in its own session, so it outlives
the page or terminal that started it. One driver per search (a lock file in the search's folder);
:func:`ensure_driver` starts one when none runs, so a search whose driver was killed or whose machine
restarted goes on from where its study and jobs stand when it is opened or resumed.

Cheap to import (no optuna, torch or mlflow).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import sys
import time
from typing import Any

from studio.core.errors import SpecError
from studio.core.settings import child_env
from studio.jobs import store
from studio.search import records
from studio.search.records import Search
from studio.search.space import default_space, narrow, starting_point, trial_spec

LOCK_NAME = "driver.lock"
LOG_NAME = "driver.log"
BUDGET_CHOICES = {"5 min": 300, "15 min": 900, "1 h": 3600}


def default_metric(task: str) -> str:
    """The score a search optimises unless told: validation accuracy for classes, R² for numbers."""
    from studio.core.spec import main_metric

    return main_metric(task)


def metrics_for(task: str) -> tuple[str, ...]:
    from studio.core.spec import metrics_for

    return metrics_for(task)


def parse_budget(text: str) -> float:
    """``10m``, ``90s``, ``1h``, ``1h30m`` or a bare number of minutes → seconds."""
    cleaned = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned) * 60
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)(h|min|m|s)", cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise SpecError(
                f"The budget '{text}' is not a time: write it like 90s, 10m, 1h or 1h30m (a bare number is minutes)."
            )
        unit = {"h": 3600, "min": 60, "m": 60, "s": 1}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    if seconds < 10:
        raise SpecError(f"The budget '{text}' is too short: give a search at least 10 seconds.")
    return seconds


def train_rows(spec: Any) -> int | None:
    try:
        from studio.data import get_dataset

        rows = get_dataset(spec.data.dataset_id).n_rows
    except Exception:  # noqa: BLE001 - only caps the batch sizes
        return None
    return int(rows * (1 - spec.data.val_fraction - spec.data.test_fraction))


def plan_space(spec: Any, narrowing: dict[str, Any] | None = None, learning_rate_centre: float | None = None):
    """The space a search of ``spec`` would try (narrowed), checked: its first trial must be a valid spec."""
    space = narrow(
        default_space(spec, train_rows=train_rows(spec), learning_rate_centre=learning_rate_centre),
        narrowing,
    )
    trial_spec(spec, starting_point(space, spec, train_rows(spec)) | space.fixed)
    return space


def start_search(
    spec: Any,
    *,
    budget_seconds: float | None = None,
    max_trials: int | None = None,
    metric: str | None = None,
    narrowing: dict[str, Any] | None = None,
    seed: int | None = None,
    token: str | None = None,
    learning_rate_centre: float | None = None,
    start_driver: bool = True,
) -> Search:
    """Store a new search around ``spec`` and start its driver. A budget (seconds), a number of trials,
    or both (whichever runs out first). :class:`SpecError` names what is wrong."""
    if not budget_seconds and not max_trials:
        raise SpecError("Give the search a time budget or a number of trials (or both).")
    if max_trials is not None and max_trials < 1:
        raise SpecError(f"The number of trials must be at least 1 (it is {max_trials}).")
    metric = metric or default_metric(spec.task)
    allowed = metrics_for(spec.task)
    if metric not in allowed:
        raise SpecError(
            f"The score '{metric}' does not fit {spec.task}; choose one of: {', '.join(allowed)}."
        )
    from studio.core.spec import metric_mode

    space = plan_space(spec, narrowing, learning_rate_centre)
    if not spec.name:
        from studio.data import readable_run_name

        spec = spec.with_changes(name=readable_run_name(spec))
    search = records.insert_search(
        name=f"Search · {spec.name}",
        spec_json=spec.to_json(),
        space_json=json.dumps(space.to_dict()),
        metric=metric,
        direction=metric_mode(metric),
        seed=spec.data.seed if seed is None else seed,
        budget_seconds=budget_seconds,
        max_trials=max_trials,
        token=token,
    )
    if start_driver:
        ensure_driver(search.id)
    return search


# --------------------------------------------------------------------------- the driver process
def _lock_path(search_id: str):
    from studio.search.study import search_dir

    return search_dir(search_id) / LOCK_NAME


def driver_running(search_id: str) -> bool:
    """Whether a driver holds this search's lock."""
    with open(_lock_path(search_id), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def driver_lock(search_id: str):
    """Held by the driver for its whole life; yields False when another driver has it."""
    with open(_lock_path(search_id), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_driver(search_id: str, wait: float = 5.0) -> bool:
    """Start the search's driver unless it has ended or one runs; True when one runs afterwards."""
    from studio.search.study import search_dir

    search = records.get_search(search_id)
    if not search.is_active:
        return False
    if driver_running(search_id):
        return True
    folder = search_dir(search_id)
    from studio.core.system import start_daemon

    proc = start_daemon(
        [sys.executable, "-m", "studio.search.driver", search_id], folder, folder / LOG_NAME, child_env()
    )  # reaped when it exits
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.poll() is None and not driver_running(search_id):
        time.sleep(0.05)
    return driver_running(search_id)


def cancel_search(search_id: str) -> Search:
    """Stop a whole search: its running trials stop, its waiting ones are dropped, and it ends cancelled
    (the best trial so far stays its result)."""
    search = records.request_cancel(search_id)
    ensure_driver(search_id)  # the driver does it (a new one if it had died)
    return search


def resume_search(
    search_id: str, *, more_seconds: float | None = None, more_trials: int | None = None
) -> Search:
    """Go on with a search: a running one whose driver is gone gets a new driver; an ended one gets
    ``more_seconds`` of budget (or ``more_trials``) and runs again, its study and trials kept."""
    search = records.get_search(search_id)
    if search.is_active and not (more_seconds or more_trials):
        ensure_driver(search_id)
        return records.get_search(search_id)
    if not search.is_active and not (more_seconds or more_trials):
        raise SpecError(
            f"Search {search_id} has ended ({search.state}); give it more time to go on, e.g. "
            f"`python -m studio jobs resume {search_id} --more 10m`."
        )
    search = records.reopen(search_id, more_seconds=more_seconds, more_trials=more_trials)
    ensure_driver(search_id)
    return search


def wait_for_search(search_id: str, timeout: float | None = None, poll: float = 0.5) -> Search:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        search = records.get_search(search_id)
        if not search.is_active:
            return search
        if deadline is not None and time.monotonic() >= deadline:
            return search
        time.sleep(poll)


def trials(search_id: str) -> list[store.Job]:
    """The search's trial jobs, in the order they were made."""
    return store.search_jobs(search_id)
