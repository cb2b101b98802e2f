"""A job's MLflow run, closed from outside the training (by the scheduler, the worker, a search's trial)."""

from __future__ import annotations

import logging

from studio.jobs import store

log = logging.getLogger("studio.scheduler")


def end_mlflow_run(
    run_id: str | None,
    status: str,
    reason: str | None = None,
    job_id: str | None = None,
    only_if: str | None = None,
) -> None:
    """Close a job's MLflow run from outside its worker (mlflow is imported only here, only when needed).

    With ``job_id`` and ``only_if``, only while the job is still in that state (a job resumed meanwhile
    has reopened its run)."""
    if not run_id:
        return
    try:
        from studio import tracking

        if job_id and only_if and store.get_job(job_id).state != only_if:
            return

        tracking.end_run(run_id, status, reason)
    except Exception:  # the job state is what the pages trust; a tracking hiccup must not stop the loop
        log.exception("could not mark MLflow run %s as %s", run_id, status)
