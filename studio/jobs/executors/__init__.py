"""Executors: where a job's training runs. The scheduler decides *which* job runs *where* (device slots,
the queue, cancels, jobs whose run died) and talks to an executor only through :class:`Executor`;
the executor starts, watches and stops the runs.

``local`` (the default, :class:`~studio.jobs.executors.local.LocalExecutor`) runs each job in a
worker process on this machine, with warm workers waiting per free slot. Another executor (a cluster)
is one class with these methods plus one :func:`register` line; ``STUDIO_EXECUTOR`` picks it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from studio.core.errors import JobError
from studio.jobs.executors.base import Ended, Executor, Slot

__all__ = ["EXECUTORS", "Ended", "Executor", "Slot", "executor_name", "make_executor", "register"]

EXECUTOR_ENV = "STUDIO_EXECUTOR"
DEFAULT_EXECUTOR = "local"


EXECUTORS: dict[str, Callable[..., Executor]] = {}


def register(name: str, factory: Callable[..., Executor]) -> None:
    """Make an executor available under ``name`` (for ``STUDIO_EXECUTOR``)."""
    EXECUTORS[name] = factory


def executor_name() -> str:
    return os.environ.get(EXECUTOR_ENV, "").strip() or DEFAULT_EXECUTOR


def make_executor(name: str | None = None, **options: object) -> Executor:
    """The executor called ``name`` (default: ``STUDIO_EXECUTOR``, else ``local``)."""
    name = name or executor_name()
    factory = EXECUTORS.get(name)
    if factory is None:
        raise JobError(
            f"There is no executor called '{name}' ({EXECUTOR_ENV}); choose one of: {', '.join(EXECUTORS)}."
        )
    return factory(**options)


def _local(**options: object) -> Executor:
    from studio.jobs.executors.local import LocalExecutor

    return LocalExecutor(**options)  # type: ignore[arg-type]


register("local", _local)


def _ray(**options: object) -> Executor:
    from studio.jobs.executors.ray import RayExecutor

    return RayExecutor(**options)  # type: ignore[arg-type]


register("ray", _ray)
