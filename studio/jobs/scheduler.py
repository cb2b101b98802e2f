"""The scheduler: one daemon per ``STUDIO_HOME`` that gives queued jobs a device slot and has an
executor run them (:mod:`studio.jobs.executors`; the default ``local`` one starts worker processes).

``ensure_scheduler()`` starts it (if none holds ``STUDIO_HOME/scheduler.lock``) as a detached process in
its own session, so it outlives the Streamlit server, the CLI or the test that started it. It talks to
the executor only through the :class:`~studio.jobs.executors.Executor` protocol. Every ~0.5 s it

1. settles runs that ended without their job ending (a killed worker; after a machine restart the
   first pass does this for every job that was running): interrupted (they can resume) when they saved
   a checkpoint, cancelled if that was asked, failed otherwise,
2. stops runs that ignored a cancel request for ``cancel_grace`` seconds,
3. fills free slots: one job per GPU, ``STUDIO_CPU_SLOTS`` (default 1) jobs on CPU; a job asking
   several devices (``training.devices``) takes that many slots at once, or all the free GPUs for
   ``auto``, and waits until they are free (jobs queued after it do not take the slots it waits for),
4. lets the executor prepare the next job on free slots (the local one keeps a warm worker per slot).

It exits by itself after ``idle_exit`` seconds without queued or running jobs. No torch, lightning or
mlflow at import time: pages call ``ensure_scheduler()``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from studio.core import settings, system
from studio.core.errors import JobError
from studio.core.settings import child_env
from studio.jobs import store
from studio.jobs.executors import DEFAULT_EXECUTOR, Executor, Slot, executor_name, make_executor
from studio.jobs.runs import end_mlflow_run
from studio.jobs.store import CANCELLED, FAILED, INTERRUPTED, RUNNING, Job

log = logging.getLogger("studio.scheduler")

LOCK_NAME = "scheduler.lock"
LOG_NAME = "scheduler.log"
DEFAULT_POLL_SECONDS = 0.5
DEFAULT_IDLE_EXIT_SECONDS = 600.0
CANCEL_GRACE_SECONDS = 10.0
START_GRACE_SECONDS = 60.0

REASON_WORKER_DIED = (
    "The worker process stopped unexpectedly (it may have been killed or the machine restarted); "
    "its log is {log}."
)
REASON_INTERRUPTED = (
    "The worker process stopped unexpectedly (it may have been killed or the machine restarted). "
    "Its progress up to epoch {epoch} is saved: resume it with the Resume button on its page or "
    "`python -m studio jobs resume {job_id}`. Its log is {log}."
)
REASON_NEVER_STARTED = "The worker process did not start; its log is {log}."
REASON_CANCELLED = "Cancelled on request."
REASON_CANCEL_KILLED = (
    "Cancelled on request (the worker did not stop by itself within {grace:.0f} s and was killed)."
)


def _devices(job: Job) -> str:
    """The job's ``training.devices`` ("1" when its spec cannot be read: it then fails in its worker)."""
    try:
        return job.spec.training.devices
    except Exception:  # noqa: BLE001 - a broken spec must not stop the scheduling loop
        return "1"


_in_process_stop: threading.Event | None = None


def pick_slot(device_request: str, slots: list[Slot], busy: set[str]) -> Slot | None:
    """The free slot a job asking for ``device_request`` gets now, or None to keep it waiting.

    Raises ``ValueError`` (with the reason for the user) when no slot here can ever run it.
    """
    return next((slot for slot in slot_pool(device_request, slots) if slot.name not in busy), None)


def pick_slots(
    device_request: str, devices: str, slots: list[Slot], busy: set[str] | frozenset[str]
) -> Slot | None:
    """The slot a job asking for ``device_request`` on ``devices`` devices (``training.devices``) gets
    now, or None to keep it waiting. Several devices are several free slots of one kind at once, given
    as one slot (:func:`combined_slot`): ``2`` waits until two are free; ``auto`` takes every free GPU
    (at least one; on a machine without GPUs one CPU slot, as ``auto`` trains in one process there).

    Raises ``ValueError`` (with the reason for the user) when no slot here can ever run it."""
    pool = slot_pool(device_request, slots)
    free = [slot for slot in pool if slot.name not in busy]
    if devices == "1" or device_request.startswith("cuda:"):
        return free[0] if free else None
    gpus = bool(pool) and pool[0].is_gpu
    if devices == "auto":
        wanted = len(free) if gpus else 1
        return combined_slot(free[:wanted]) if free else None
    wanted = int(devices)
    if wanted > len(pool):
        raise ValueError(too_many_devices(wanted, len(pool), gpus))
    return combined_slot(free[:wanted]) if len(free) >= wanted else None


def too_many_devices(wanted: int, have: int, gpus: bool) -> str:
    if gpus:
        there = "1 GPU" if have == 1 else f"{have} GPUs"
        return (
            f"The job asks for {wanted} devices, but this machine has {there}: set Devices to {have} "
            "(or 'auto' for every free GPU) and submit it again."
        )
    return (
        f"The job asks for {wanted} devices, and this machine has no GPU for it, so it would train in "
        f"{wanted} CPU processes, but the studio runs at most {have} CPU job(s) at a time "
        f"(STUDIO_CPU_SLOTS={have}): set Devices to 1, or raise STUDIO_CPU_SLOTS."
    )


def combined_slot(parts: list[Slot]) -> Slot:
    """One slot made of several (their names and GPUs joined with commas): a job on several devices."""
    if len(parts) == 1:
        return parts[0]
    gpus = ",".join(p.cuda_visible_devices for p in parts if p.cuda_visible_devices)
    return Slot(",".join(p.name for p in parts), gpus)


def slot_names(device: str | None) -> list[str]:
    """The slots a running job holds (its ``device``: one slot name, or several joined with commas)."""
    return [name for name in (device or "").split(",") if name]


def busy_slots(running: list[Job]) -> set[str]:
    return {name for job in running for name in slot_names(job.device)}


def slot_pool(device_request: str, slots: list[Slot]) -> list[Slot]:
    """The slots a job asking for ``device_request`` may run on (raises ``ValueError`` when none)."""
    gpu_slots = [s for s in slots if s.is_gpu]
    cpu_slots = [s for s in slots if not s.is_gpu]
    if device_request == "cpu":
        wanted = cpu_slots
    elif device_request == "auto":
        wanted = gpu_slots or cpu_slots
    else:  # "cuda" or "cuda:N"
        if not gpu_slots:
            raise ValueError(
                f"The job asks for device '{device_request}', but this machine has no GPU; "
                "choose device 'auto' or 'cpu'."
            )
        wanted = gpu_slots
        if ":" in device_request:
            wanted = [s for s in gpu_slots if s.name == device_request]
            if not wanted:
                raise ValueError(
                    f"The job asks for GPU {device_request.split(':', 1)[1]}, but this machine has "
                    f"{len(gpu_slots)} GPU(s), numbered from 0."
                )
    return wanted


# --------------------------------------------------------------------------- the loop
class Scheduler:
    """One scheduling loop. ``tick()`` is a single pass; the daemon calls it every ``poll`` seconds."""

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        worker_cmd: list[str] | tuple[str, ...] | None = None,
        cancel_grace: float = CANCEL_GRACE_SECONDS,
        gpus: list[str] | None = None,
        cpu_slots: int | None = None,
        keep_warm: bool = True,
    ) -> None:
        """``executor`` runs the jobs (default: the one ``STUDIO_EXECUTOR`` names, else ``local``, which
        takes ``worker_cmd``, ``gpus``, ``cpu_slots`` and ``keep_warm``)."""
        if executor is None:
            name = executor_name()
            local = {"worker_cmd": worker_cmd, "gpus": gpus, "cpu_slots": cpu_slots, "keep_warm": keep_warm}
            executor = make_executor(name, **(local if name == DEFAULT_EXECUTOR else {}))
        self.executor = executor
        self.cancel_grace = cancel_grace
        self._background: list[threading.Thread] = []

    @property
    def slots(self) -> list[Slot]:
        return self.executor.slots()

    def tick(self) -> None:
        self.reap()
        self.reconcile()
        self.enforce_cancels()
        self.fill_slots()
        self.warm_up()

    # ---- dead workers
    def reap(self) -> None:
        """Runs this scheduler started that ended: a job they left running is settled by
        :meth:`_close_dead`."""
        for ended in self.executor.poll():
            try:
                job = store.get_job(ended.job_id)
            except JobError:
                continue  # deleted meanwhile
            if job.state == RUNNING and job.pid == ended.worker:
                self._close_dead(job, exit_code=ended.exit_code)

    def reconcile(self) -> None:
        """Running jobs whose worker is gone (killed, or the machine restarted) are settled by
        :meth:`_close_dead`: interrupted, cancelled or failed."""
        now = time.time()
        for job in store.list_jobs(states=[RUNNING], actions=True):
            if self.executor.started(job.id):
                continue  # ours: reap() learns how it ended
            if job.pid is None:
                if job.started_at is not None and now - job.started_at > START_GRACE_SECONDS:
                    checkpoint = store.job_checkpoint(job.id)  # a resumed job keeps its saved progress
                    state = INTERRUPTED if checkpoint is not None else FAILED
                    reason = REASON_NEVER_STARTED.format(log=job.log_path)
                    if checkpoint is not None:
                        reason += f" Its progress up to epoch {checkpoint.epoch} is saved: resume it again."
                    if store.finish_job(job.id, state, reason=reason):
                        log.warning("job %s: %s", job.id, reason)
                continue
            if not self.executor.alive(job):
                self._close_dead(job)

    def _close_dead(self, job: Job, exit_code: int | None = None) -> None:
        """A job whose worker is gone: cancelled when that was asked for; interrupted (it can resume)
        when it saved a checkpoint; failed otherwise. Its MLflow run is closed KILLED (cancelled,
        interrupted) or FAILED, never FINISHED."""
        checkpoint = store.job_checkpoint(job.id)
        if job.cancel_requested:
            state, reason, mlflow_status = CANCELLED, REASON_CANCELLED, "KILLED"
        elif checkpoint is not None:
            state, mlflow_status = INTERRUPTED, "KILLED"
            reason = REASON_INTERRUPTED.format(epoch=checkpoint.epoch, job_id=job.id, log=job.log_path)
        else:
            state, mlflow_status = FAILED, "FAILED"
            reason = REASON_WORKER_DIED.format(log=job.log_path)
        if exit_code is not None and exit_code < 0:
            reason = reason.replace("unexpectedly", f"unexpectedly (signal {-exit_code})", 1)
        if store.finish_job(job.id, state, reason=reason, only_pid=job.pid):
            log.warning("job %s: worker %s is gone (exit %s); marked %s", job.id, job.pid, exit_code, state)
            self._in_background(end_mlflow_run, job.mlflow_run_id, mlflow_status, reason, job.id, state)

    # ---- cancels the worker ignored
    def enforce_cancels(self) -> None:
        now = time.time()
        for job in store.list_jobs(states=[RUNNING], actions=True):
            if not job.cancel_requested or job.cancel_requested_at is None:
                continue
            if now - job.cancel_requested_at < self.cancel_grace:
                continue
            self.executor.cancel(job, force=True)
            reason = REASON_CANCEL_KILLED.format(grace=self.cancel_grace)
            if store.finish_job(job.id, CANCELLED, reason=reason):
                log.warning("job %s: worker ignored the cancel request; killed", job.id)
                self._in_background(end_mlflow_run, job.mlflow_run_id, "KILLED", None, job.id, CANCELLED)

    # ---- queued jobs into free slots
    def fill_slots(self) -> None:
        queued = store.queued_jobs()
        if not queued:
            return
        running = store.list_jobs(states=[RUNNING], actions=True)
        busy = busy_slots(running) | self.executor.settling({job.id for job in running})
        held: set[str] = set()  # free slots a job asking several devices waits for
        for job in queued:
            devices = _devices(job)
            try:
                slot = pick_slots(job.device_request, devices, self.slots, busy | held)
            except ValueError as err:
                if store.finish_job(job.id, FAILED, reason=str(err)):
                    log.warning("job %s: %s", job.id, err)
                continue
            if slot is None:
                if devices not in ("1", "auto"):  # no later job may take what it waits for
                    pool = slot_pool(job.device_request, self.slots)
                    held |= {s.name for s in pool if s.name not in busy}
                continue
            if not store.claim_job(job.id, slot.name):
                continue  # another scheduler took it
            busy.update(slot_names(slot.name))
            self.executor.submit(job, slot)

    def warm_up(self) -> None:
        self.executor.keep_warm(busy_slots(store.list_jobs(states=[RUNNING], actions=True)))

    def retire_standby(self) -> None:
        self.executor.shutdown()

    def _in_background(self, fn, *args) -> None:
        # Closing an MLflow run imports mlflow (seconds); the loop keeps scheduling meanwhile.
        thread = threading.Thread(target=fn, args=args, daemon=True)
        thread.start()
        self._background = [t for t in self._background if t.is_alive()] + [thread]

    def finish_background(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._background:
            thread.join(max(0.0, deadline - time.monotonic()))

    def has_work(self) -> bool:
        return self.executor.running() or store.count_active() > 0


# --------------------------------------------------------------------------- the single daemon
def _lock_path() -> Path:
    return settings.studio_home() / LOCK_NAME


def _try_lock(path: Path, exclusive: bool = True):
    """An open file holding the lock, or None when another process holds it."""
    handle = open(path, "a+")  # noqa: SIM115 - the lock lives as long as the handle
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def scheduler_running() -> bool:
    """Whether a scheduler holds this ``STUDIO_HOME``'s lock."""
    path = _lock_path()
    if not path.exists():
        return False
    probe = _try_lock(path, exclusive=False)
    if probe is None:
        return True
    probe.close()
    return False


def scheduler_pid() -> int | None:
    """The pid of the running scheduler, if one runs."""
    if not scheduler_running():
        return None
    try:
        return int(_lock_path().read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def run_scheduler_forever(
    *,
    poll: float = DEFAULT_POLL_SECONDS,
    idle_exit: float | None = DEFAULT_IDLE_EXIT_SECONDS,
    worker_cmd: list[str] | tuple[str, ...] | None = None,
    cancel_grace: float = CANCEL_GRACE_SECONDS,
    stop: threading.Event | None = None,
) -> bool:
    """Run the scheduling loop here until ``stop`` is set, SIGTERM/SIGINT arrives (main thread only)
    or it has been idle for ``idle_exit`` seconds (None: never). Returns False at once when another
    scheduler already runs for this ``STUDIO_HOME``. Running workers are left to finish on their own.
    """
    global _in_process_stop
    lock_file = _acquire_scheduler_lock()
    if lock_file is None:
        return False
    stop = stop or threading.Event()
    _in_process_stop = stop
    restore = system.stop_on_signals(stop)
    scheduler = Scheduler(worker_cmd=worker_cmd, cancel_grace=cancel_grace)
    log.info(
        "scheduler %s up for %s with slots %s",
        os.getpid(),
        settings.studio_home(),
        ", ".join(s.name for s in scheduler.slots),
    )
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            try:
                scheduler.tick()
            except Exception:  # a locked or briefly unreadable database must not end the daemon
                log.exception("scheduler pass failed; retrying")
            if scheduler.has_work():
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                # Give the lock up first, then look once more: a job submitted before this point is seen
                # here; one submitted after it finds no scheduler and starts a new one.
                lock_file.close()
                if store.count_active() == 0:
                    break
                lock_file = _acquire_scheduler_lock()
                if lock_file is None:
                    break
                idle_since = time.monotonic()
            stop.wait(poll)
    finally:
        scheduler.retire_standby()
        scheduler.finish_background()
        lock_file.close()
        restore()
        _in_process_stop = None
        log.info("scheduler %s stopped", os.getpid())
    return True


def _acquire_scheduler_lock(wait: float = 2.0):
    # Probes (scheduler_running) hold the lock for microseconds, so retry briefly before giving up.
    path = _lock_path()
    deadline = time.monotonic() + wait
    while True:
        handle = _try_lock(path)
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def ensure_scheduler(
    *,
    worker_cmd: list[str] | tuple[str, ...] | None = None,
    idle_exit: float | None = DEFAULT_IDLE_EXIT_SECONDS,
    cancel_grace: float = CANCEL_GRACE_SECONDS,
    wait: float = 5.0,
) -> None:
    """Start the scheduler daemon for this ``STUDIO_HOME`` unless one runs; cheap when it does.

    The daemon gets its own session and logs to ``STUDIO_HOME/scheduler.log``, so it survives the
    process that started it. The options apply only when a new daemon is started.
    """
    if scheduler_running():
        return
    home = settings.studio_home()
    cmd = [
        sys.executable,
        "-m",
        "studio.jobs",
        "--poll",
        str(DEFAULT_POLL_SECONDS),
        "--idle-exit",
        "never" if idle_exit is None else str(idle_exit),
        "--cancel-grace",
        str(cancel_grace),
    ]
    if worker_cmd is not None:
        cmd += ["--worker-cmd", json.dumps(list(worker_cmd))]
    proc = system.start_daemon(cmd, home, home / LOG_NAME, child_env())  # reaped when it exits
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.poll() is None and not scheduler_running():
        time.sleep(0.05)


def stop_scheduler(timeout: float = 10.0) -> bool:
    """Stop this ``STUDIO_HOME``'s scheduler (workers keep running). True when none runs afterwards."""
    if _in_process_stop is not None:
        _in_process_stop.set()
    pid = scheduler_pid()
    if pid is not None and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while scheduler_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    if scheduler_running() and pid is not None and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return not scheduler_running()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.jobs", description=__doc__.split("\n")[0])
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_SECONDS)
    parser.add_argument(
        "--idle-exit",
        default=str(DEFAULT_IDLE_EXIT_SECONDS),
        help="seconds without jobs before exiting, or 'never'",
    )
    parser.add_argument("--cancel-grace", type=float, default=CANCEL_GRACE_SECONDS)
    parser.add_argument("--worker-cmd", help="JSON list; '{job_id}' is replaced (tests use a fake worker)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ran = run_scheduler_forever(
        poll=args.poll,
        idle_exit=None if args.idle_exit == "never" else float(args.idle_exit),
        worker_cmd=json.loads(args.worker_cmd) if args.worker_cmd else None,
        cancel_grace=args.cancel_grace,
    )
    if not ran:
        log.info("another scheduler already runs for %s", settings.studio_home())
    return 0
