"""Durable background training jobs.

Pages and the CLI never train: :func:`submit_job` stores a queued job with its spec in
``STUDIO_HOME/studio.db`` and makes sure the scheduler daemon runs; the scheduler starts
``python -m studio.cli.worker JOB_ID`` in its own process session on a free device slot. Jobs therefore
survive page reruns, closed browsers and restarts of the Streamlit server.

Cheap to import (no torch, lightning or mlflow).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from studio.jobs import store
from studio.jobs.scheduler import ensure_scheduler, run_scheduler_forever, scheduler_running, stop_scheduler
from studio.jobs.store import (
    ACTIVE_STATES,
    CANCELLED,
    FAILED,
    FINAL_STATES,
    INTERRUPTED,
    QUEUED,
    RESUMABLE_STATES,
    RUNNING,
    STATES,
    SUCCEEDED,
    Job,
    format_duration,
)

if TYPE_CHECKING:
    from studio.core.spec import RunSpec

__all__ = [
    "ACTIVE_STATES",
    "CANCELLED",
    "FAILED",
    "FINAL_STATES",
    "INTERRUPTED",
    "QUEUED",
    "RESUMABLE_STATES",
    "RUNNING",
    "STATES",
    "SUCCEEDED",
    "Job",
    "cancel_job",
    "delete_dataset",
    "delete_job",
    "ensure_scheduler",
    "format_duration",
    "get_job",
    "latest_action",
    "list_jobs",
    "read_action_result",
    "resume_job",
    "run_scheduler_forever",
    "scheduler_running",
    "stop_scheduler",
    "submit_action",
    "submit_job",
    "wait_for_job",
]


def submit_job(spec: RunSpec, *, start_scheduler: bool = True, token: str | None = None) -> Job:
    """Queue a training job for ``spec`` and (by default) make sure a scheduler will pick it up.

    ``token`` identifies one press of a submit button: submitting again with the same token returns the
    job it made (a double click makes one job). An unnamed spec gets the readable name its MLflow run
    will carry too, so the Runs page, the CLI and the MLflow UI call the run the same."""
    if not spec.name:
        from studio.data import readable_run_name

        spec = spec.with_changes(name=readable_run_name(spec))
    job = store.insert_job(spec, token)
    if start_scheduler:
        ensure_scheduler()
    return job


def delete_dataset(dataset_id: str) -> None:
    """Remove a stored data set; it disappears at once (renamed away first), then its files are deleted.
    Refused with :class:`~studio.core.errors.DatasetError` while a queued or running job trains on it.
    The check and the rename hold the job store's write lock, which queueing a job needs too: no job
    slips in between."""
    import shutil

    from studio.data import store as datasets

    with store.transaction():
        _refuse_if_in_use(dataset_id)
        trash = datasets.move_to_trash(dataset_id)
    shutil.rmtree(trash, ignore_errors=True)


def _refuse_if_in_use(dataset_id: str) -> None:
    """:class:`DatasetError` naming the queued or running jobs that train on this data set: deleting it
    from under them would make them fail."""
    from studio.core.errors import DatasetError
    from studio.data import get_dataset

    using = store.active_jobs_using(dataset_id)
    if not using:
        return
    name = get_dataset(dataset_id).name
    named = [f"the {job.state} run '{job.name}' (job {job.id})" for job in using[:3]]
    if len(using) > 3:
        named.append(f"{len(using) - 3} more")
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    them = "it" if len(using) == 1 else "them"
    raise DatasetError(
        f"'{name}' is used by {listed}; cancel {them} or wait for {them} to end before deleting."
    )


def submit_action(parent: Job, action: str, options: dict | None = None, *, start_scheduler: bool = True) -> Job:
    """Queue work on a trained job's model, run by a worker like training (:mod:`studio.engine.analysis`):
    ``explain`` (permutation importance, saliency), ``explain_row`` (one prediction; ``options["row"]``),
    ``compress`` (a small version). A second press while one is waiting or running returns that one."""
    from studio.core.errors import JobError

    if parent.action or parent.state != SUCCEEDED or not parent.bundle_path:
        raise JobError("Only a run that finished with a saved model can be explained or made smaller.")
    job = store.insert_action_job(parent, action, options)
    if start_scheduler:
        ensure_scheduler()
    return job


def read_action_result(job: Job) -> dict | None:
    """What an action job wrote into its folder (``result.json``): None until it wrote it."""
    import json

    path = store.job_dir(job.id) / "result.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def latest_action(parent_id: str, action: str) -> Job | None:
    """The newest job that did ``action`` on ``parent_id``'s model."""
    found = store.action_jobs(parent_id, action)
    return found[0] if found else None


def get_job(job_id: str) -> Job:
    """The job with this id; :class:`~studio.core.errors.JobError` when there is none."""
    return store.get_job(job_id)


def list_jobs(
    limit: int | None = None, states: list[str] | tuple[str, ...] | None = None, actions: bool = False
) -> list[Job]:
    """Training jobs newest first, optionally only those in ``states`` (``actions``: with the jobs that
    work on a trained model, :func:`submit_action`)."""
    return store.list_jobs(limit=limit, states=states, actions=actions)


def cancel_job(job_id: str) -> Job:
    """Cancel a job: a queued one is cancelled (removed from the queue) at once; a running one is
    asked to stop (flag + SIGTERM; its worker stops within a training step) and is killed by the
    scheduler if it has not stopped after ~10 s. Its checkpoints are kept, so a cancelled run that
    finished an epoch can be resumed (:func:`resume_job`). Returns the job as it is now."""
    job = store.request_cancel(job_id)
    if job.state == RUNNING:
        from studio.jobs.executors import make_executor

        make_executor().cancel(job)
        ensure_scheduler()  # it enforces the kill deadline and settles a worker that died meanwhile
    return job


def delete_job(job_id: str) -> None:
    """Remove a queued or finished job (a queued one is dropped from the queue) and its checkpoints."""
    store.delete_job(job_id)


def resume_job(job_id: str, *, start_scheduler: bool = True) -> Job:
    """Queue an interrupted or cancelled job again: its worker continues from the job's latest checkpoint
    (the end of its last finished epoch), in the same MLflow run. :class:`~studio.core.errors.JobError` says
    why when it cannot be resumed (still active, finished, failed, or nothing saved)."""
    job = store.requeue_to_resume(job_id)
    if start_scheduler:
        ensure_scheduler()
    return job


def wait_for_job(job_id: str, timeout: float | None = None, poll: float = 0.25) -> Job:
    """Block until the job has ended (or ``timeout`` seconds passed) and return it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = store.get_job(job_id)
        if not job.is_active:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            return job
        time.sleep(poll)
