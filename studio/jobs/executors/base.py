"""The executor protocol and the values it passes (see :mod:`studio.jobs.executors`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from studio.jobs.store import Job


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

    def settling(self, running: set[str]) -> set[str]:
        """Slots to keep busy a moment longer although their job has ended (``running``: the ids of the
        jobs the store has as running): the process that ran it is about to take the slot's next job."""

    def running(self) -> bool:
        """Whether any run it started is still going."""

    def shutdown(self) -> None:
        """Let go of what it prepared (running jobs go on by themselves)."""
