"""The ``local`` executor: each job trains in a worker process on this machine.

A worker runs in its own session, so stopping the scheduler never stops a running job; a job's output
goes to the job's log. One warm worker waits per free slot (``python -m studio.cli.worker --standby``:
torch, Lightning and MLflow already imported, waiting on stdin for a job id), so a new job logs its first
step in ~2 s instead of ~10 s. When no warm worker waits (the slot has just been busy), the job's worker is
started the same way and given the job at once: it pays the imports this once. Slots are this machine's
GPUs (one job each) and ``STUDIO_CPU_SLOTS`` CPU slots. A job on several devices gets several slots
joined into one (``cpu:0,cpu:1``; ``CUDA_VISIBLE_DEVICES`` lists all its GPUs) and always a fresh worker
of its own (``python -m studio.cli.worker JOB_ID``): the warm ones see a single slot's GPU.

A warm worker is used again: when its job has ended well it says so on a pipe of its own (``ready
JOB_ID``) and becomes the slot's waiting worker once more, so a queue of jobs on one slot (a search's
trials) pays the imports once. Only that word counts: a worker that exits instead is reaped as usual.
A warm worker's own output (its imports, its waiting) goes to ``standby-worker.log``.

A warm worker holds about 1 GB of memory while it waits (the imports); ``STUDIO_STANDBY_WORKER=0``
(``serve --no-standby``) keeps none, and every job then starts a fresh worker of its own (~10 s more
before its first step) that exits with its job.

A worker is a new interpreter (``python -m studio.cli.worker``), or, when ``STUDIO_FORK_SERVER``
names the socket of a fork server (:mod:`studio.core.forkserver`), a fork of that server, which has
imported the training stack once: the same worker with the same arguments, folder, environment, session
and output, without its imports. When no server answers there, the worker is a new interpreter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from studio.core import settings, system
from studio.core.forkserver import ForkedProcess, popen
from studio.core.settings import child_env
from studio.jobs import store
from studio.jobs.executors.base import Ended, Slot
from studio.jobs.store import FAILED, Job

log = logging.getLogger("studio.scheduler")

WorkerProcess = subprocess.Popen | ForkedProcess

DEFAULT_WORKER_CMD = (sys.executable, "-m", "studio.cli.worker", "{job_id}")
WARM_RETRY_SECONDS = 30.0
SETTLE_SECONDS = 20.0
"""How long a warm worker whose job has ended may take to say it is ready for the next one (it frees the
job's memory first) before it is let go and its slot given to a new worker."""
READY_FD_ENV = "STUDIO_READY_FD"
"""The file descriptor on which a warm worker says ``ready JOB_ID`` when it can take another job."""
STANDBY_ENV = "STUDIO_STANDBY_WORKER"
"""``0`` (or ``false``, ``no``, ``off``): keep no warm worker waiting (``serve --no-standby``)."""


def standby_wanted() -> bool:
    """Whether a warm worker waits on each free slot (``STUDIO_STANDBY_WORKER``, default on)."""
    return os.environ.get(STANDBY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# --------------------------------------------------------------------------- this machine's slots
def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries, found without importing torch."""
    return [entry for entry, _ in system.visible_gpus()]


def cpu_slot_count() -> int:
    """``STUDIO_CPU_SLOTS`` (default 1): how many jobs may train on the CPU at once."""
    raw = os.environ.get("STUDIO_CPU_SLOTS", "").strip()
    try:
        return max(1, int(raw)) if raw else 1
    except ValueError:
        log.warning("STUDIO_CPU_SLOTS=%r is not a whole number; using 1", raw)
        return 1


def device_slots(gpus: list[str] | None = None, cpu_slots: int | None = None) -> list[Slot]:
    gpus = visible_gpus() if gpus is None else gpus
    cpu_slots = cpu_slot_count() if cpu_slots is None else cpu_slots
    return [Slot(f"cuda:{i}", gpu) for i, gpu in enumerate(gpus)] + [
        Slot(f"cpu:{i}", "") for i in range(cpu_slots)
    ]


# --------------------------------------------------------------------------- worker processes
def worker_alive(pid: int | None, create_time: float | None) -> bool:
    """Whether ``pid`` is still the process that was recorded (a reused pid has another start time)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not (create_time and abs(proc.create_time() - create_time) > 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def signal_worker(job: Job, sig: int) -> bool:
    """Send ``sig`` to the job's worker process group (the worker leads its own session)."""
    if not worker_alive(job.pid, job.pid_create_time):
        return False
    try:
        os.killpg(job.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        with contextlib.suppress(OSError):
            os.kill(job.pid, sig)
    return True


class LocalExecutor:
    """Worker processes on this machine (see the module's docstring)."""

    name = "local"

    def __init__(
        self,
        *,
        worker_cmd: list[str] | tuple[str, ...] | None = None,
        gpus: list[str] | None = None,
        cpu_slots: int | None = None,
        keep_warm: bool = True,
    ) -> None:
        self.worker_cmd = list(worker_cmd or DEFAULT_WORKER_CMD)
        self._gpus, self._cpu_slots = gpus, cpu_slots
        self._slots: list[Slot] | None = None
        self.children: dict[str, WorkerProcess] = {}
        # Warm workers only with the real worker (tests that pass a fake worker command get cold starts).
        self.warm = worker_cmd is None and keep_warm and standby_wanted()
        self.standby: dict[str, WorkerProcess] = {}
        self._standby_started: dict[str, float] = {}
        self._ready: dict[int, tuple[int, bytearray]] = {}  # warm worker pid -> (its pipe, unread bytes)
        self._reusable: dict[str, str] = {}  # job id -> slot, for jobs run by a warm worker
        self._settling_since: dict[str, float] = {}  # job id -> when its end was first seen here

    def slots(self) -> list[Slot]:
        if self._slots is None:  # (found when first needed: cancelling a job needs no GPU list)
            self._slots = device_slots(self._gpus, self._cpu_slots)
        return self._slots

    def submit(self, job: Job, slot: Slot) -> None:
        self.launch(job, slot)

    def poll(self) -> list[Ended]:
        """Collect the exit status of the workers it started; a warm worker that said it is ready for
        another job after this one goes back to waiting on its slot."""
        ended = []
        for job_id, proc in list(self.children.items()):
            code = proc.poll()
            if code is not None:
                del self.children[job_id]
                self._reusable.pop(job_id, None)
                self._close_pipe(proc.pid)
                ended.append(Ended(job_id, proc.pid, code))
            elif job_id in self._reusable and self._said_ready(proc.pid, job_id):
                del self.children[job_id]
                slot = self._reusable.pop(job_id)
                waiting = self.standby.get(slot)
                if waiting is None or waiting.poll() is not None:
                    self.standby[slot] = proc
                    log.info("job %s ended; worker %s waits for the next job on %s", job_id, proc.pid, slot)
                else:
                    self._retire(proc)
        return ended

    def _said_ready(self, pid: int, job_id: str) -> bool:
        """Whether the worker wrote ``ready JOB_ID`` on its pipe (read without waiting)."""
        entry = self._ready.get(pid)
        if entry is None:
            return False
        fd, unread = entry
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(fd, 4096):
                unread.extend(chunk)
        lines = unread.split(b"\n")
        unread[:] = lines[-1]
        return f"ready {job_id}".encode() in lines[:-1]

    def _close_pipe(self, pid: int) -> None:
        entry = self._ready.pop(pid, None)
        if entry is not None:
            with contextlib.suppress(OSError):
                os.close(entry[0])

    def started(self, job_id: str) -> bool:
        return job_id in self.children

    def alive(self, job: Job) -> bool:
        return worker_alive(job.pid, job.pid_create_time)

    def cancel(self, job: Job, *, force: bool = False) -> bool:
        """SIGTERM to the worker's process group (it stops within a training step), SIGKILL if ``force``."""
        return signal_worker(job, signal.SIGKILL if force else signal.SIGTERM)

    def logs(self, job: Job) -> Path:
        return store.log_path(job.id)

    def running(self) -> bool:
        return bool(self.children)

    def shutdown(self) -> None:
        """Let the warm workers go (they exit when their stdin closes; one still running a job finishes
        it first)."""
        for proc in self.standby.values():
            self._retire(proc)
        self.standby.clear()
        for job_id in list(self._reusable):  # no next job for them: they exit after this one
            proc = self.children.get(job_id)
            if proc is not None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

    def worker_env(self, slot: Slot) -> dict[str, str]:
        env = child_env()
        env["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible_devices
        env["STUDIO_JOB_SLOT"] = slot.name
        cpu_share = sum(1 for s in self.slots() if not s.is_gpu)
        if not slot.is_gpu and cpu_share > 1:
            # Several CPU jobs at once: share the cores instead of each one taking all of them.
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cpu_share)))
        return env

    def launch(self, job: Job, slot: Slot) -> None:
        """Start the worker for a claimed job in its own session, its output into the job's log.
        A warm worker waiting on this slot takes the job when there is one (no import wait). When there
        is none, a new worker is started as a warm one that gets the job at once: it imports first, and
        once its job has ended well it stays for the slot's next job, as a warm worker does (a queue of
        jobs after a cold start pays the imports once, not once per job). A job on several slots, a
        worker command of the tests' own, or ``STUDIO_STANDBY_WORKER=0`` keep one process per job."""
        if self._hand_to_standby(job, slot):
            return
        if self.warm and "," not in slot.name:
            started = self._start_warm(slot)
            if started is not None:
                self.standby[slot.name] = started
                if self._hand_to_standby(job, slot):
                    return
        env = self.worker_env(slot)
        cmd = [part.replace("{job_id}", job.id) for part in self.worker_cmd]
        try:
            with open(store.log_path(job.id), "ab") as out:
                proc = popen(cmd, cwd=store.job_dir(job.id), env=env, stdout=out)
        except OSError as err:
            store.finish_job(job.id, FAILED, reason=f"The worker process could not be started: {err}.")
            return
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            created = 0.0  # already gone: reap() settles it
        store.set_worker(job.id, proc.pid, created)
        self.children[job.id] = proc
        log.info("job %s: started worker %s on %s", job.id, proc.pid, slot.name)

    def _hand_to_standby(self, job: Job, slot: Slot) -> bool:
        proc = self.standby.pop(slot.name, None)
        if proc is None:
            return False
        if proc.poll() is None:
            try:
                created = psutil.Process(proc.pid).create_time()
                store.set_worker(job.id, proc.pid, created)
                assert proc.stdin is not None
                proc.stdin.write(f"{job.id}\n".encode())
                proc.stdin.flush()  # stdin stays open: the next job id may follow (see poll)
            except (OSError, psutil.NoSuchProcess):
                store.set_worker(job.id, None, None)
            else:
                self.children[job.id] = proc
                if proc.pid in self._ready:
                    self._reusable[job.id] = slot.name
                log.info("job %s: handed to warm worker %s on %s", job.id, proc.pid, slot.name)
                return True
        self._retire(proc)
        return False

    def settling(self, running: set[str]) -> set[str]:
        """The slots of warm workers whose job has ended (it is not in ``running``) but that have not yet
        said whether they take the next one. A queued job waits for that word (one pass or two) and
        goes to the same worker, where it would otherwise start a new one (~10 s of imports, beside
        the worker that is about to wait idle). A worker that has not said so within
        :data:`SETTLE_SECONDS` is let go; :meth:`poll` reaps it and the slot is free."""
        now = time.monotonic()
        self._settling_since = {j: t for j, t in self._settling_since.items() if j in self._reusable}
        slots = set()
        for job_id, slot in list(self._reusable.items()):
            if job_id in running:
                continue
            since = self._settling_since.setdefault(job_id, now)
            if now - since <= SETTLE_SECONDS:
                slots.add(slot)
                continue
            log.warning("job %s ended %.0f s ago; its worker has not said it is ready: let go", job_id, now - since)
            del self._reusable[job_id], self._settling_since[job_id]
            proc = self.children.get(job_id)
            if proc is not None:
                with contextlib.suppress(OSError):
                    proc.terminate()
        return slots

    def keep_warm(self, busy: set[str]) -> None:
        """Keep one warm worker per free slot (started when the slot has nothing to run, so its imports
        never compete with a training job for the CPU)."""
        if not self.warm:
            return
        # A warm worker whose job has just ended comes back to its slot once it says so: no second one.
        busy = busy | set(self._reusable.values())
        for slot in self.slots():
            proc = self.standby.get(slot.name)
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                self.standby.pop(slot.name)
                self._close_pipe(proc.pid)
            if (
                slot.name in busy
                or time.monotonic() - self._standby_started.get(slot.name, -1e9) < WARM_RETRY_SECONDS
            ):
                continue  # in use, or a warm worker died young: do not start one in a loop
            self._standby_started[slot.name] = time.monotonic()
            proc = self._start_warm(slot)
            if proc is not None:
                self.standby[slot.name] = proc

    def _start_warm(self, slot: Slot) -> WorkerProcess | None:
        """A warm worker for ``slot`` (``--standby``: it imports, then reads job ids on stdin), its own
        output into ``standby-worker.log``; None when it could not be started."""
        read_end, write_end = os.pipe()  # the worker's "ready for another job" channel
        os.set_blocking(read_end, False)
        try:
            with open(settings.studio_home() / "standby-worker.log", "ab") as out:
                proc = popen(
                    [sys.executable, "-m", "studio.cli.worker", "--standby"],
                    cwd=settings.studio_home(),
                    env={**self.worker_env(slot), READY_FD_ENV: str(write_end)},
                    stdout=out,
                    stdin_pipe=True,
                    pass_fds=(write_end,),
                )
        except OSError as err:
            os.close(read_end)
            log.warning("could not start a warm worker for %s: %s", slot.name, err)
            return None
        else:
            self._ready[proc.pid] = (read_end, bytearray())
            return proc
        finally:
            os.close(write_end)

    def _retire(self, proc: WorkerProcess) -> None:
        self._close_pipe(proc.pid)
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(OSError):
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
