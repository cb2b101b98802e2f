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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from studio.errors import JobError

if TYPE_CHECKING:
    from studio.jobs.store import Job

EXECUTOR_ENV = "STUDIO_EXECUTOR"
DEFAULT_EXECUTOR = "local"


@dataclass(frozen=True)
class Slot:
    """A place one job runs: ``cpu:0``… or ``cuda:0``… (GPU numbers as the scheduler sees them)."""

    name: str
    cuda_visible_devices: str  # what the worker gets as CUDA_VISIBLE_DEVICES ("" hides every GPU)

    @property
    def is_gpu(self) -> bool:
        return self.name.startswith("cuda")


class Ended(NamedTuple):
    """A run this executor started that is over: its job, the worker that ran it (as recorded in the
    job store) and its exit code (negative: killed by that signal; None: unknown)."""

    job_id: str
    worker: int | None
    exit_code: int | None


@runtime_checkable
class Executor(Protocol):
    """What the scheduler needs from whatever runs the jobs."""

    name: str

    def slots(self) -> list[Slot]:
        """The places jobs can run now (one job each)."""

    def submit(self, job: Job, slot: Slot) -> None:
        """Start the claimed ``job`` on ``slot``. Records its worker in the job store; a start that
        fails ends the job FAILED with the reason."""

    def poll(self) -> list[Ended]:
        """The runs it started that ended since the last call (each reported once)."""

    def started(self, job_id: str) -> bool:
        """Whether this executor (this scheduler) started the job's run and still watches it."""

    def alive(self, job: Job) -> bool:
        """Whether the job's recorded worker still runs (also for runs started before a restart)."""

    def cancel(self, job: Job, *, force: bool = False) -> bool:
        """Ask the job's run to stop (``force``: stop it now). Callable from any process. True when
        there was a run to signal."""

    def logs(self, job: Job) -> Path:
        """Where the job's output is written."""

    def keep_warm(self, busy: set[str]) -> None:
        """Prepare for the next job on the free slots (``busy``: slot names in use), if it can."""

    def running(self) -> bool:
        """Whether any run it started is still going."""

    def shutdown(self) -> None:
        """Let go of what it prepared (running jobs go on by themselves)."""


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
