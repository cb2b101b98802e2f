"""The scheduler: one daemon per ``STUDIO_HOME`` that gives queued jobs a device slot and starts workers.

``ensure_scheduler()`` starts it (if none holds ``STUDIO_HOME/scheduler.lock``) as a detached process in
its own session, so it outlives the Streamlit server, the CLI or the test that started it. Each worker it
starts (``python -m studio.worker JOB_ID``) is again in its own session, so stopping the scheduler never
stops a running job. Every ~0.5 s the scheduler

1. reaps the workers it started and reconciles jobs whose worker died: interrupted (they can resume)
   when they saved a checkpoint, cancelled if that was asked, failed otherwise. After a machine restart
   the first pass does this for every job that was running,
2. kills workers that ignored a cancel request for ``cancel_grace`` seconds,
3. fills free slots: one job per GPU, ``STUDIO_CPU_SLOTS`` (default 1) jobs on CPU,
4. keeps one warm worker per free slot (``python -m studio.worker --standby``: torch, Lightning and
   MLflow already imported, waiting on stdin), so a new job logs its first step in ~2 s instead of ~10 s.

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
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from studio import settings, system
from studio.errors import JobError
from studio.jobs import store
from studio.jobs.store import CANCELLED, FAILED, INTERRUPTED, RUNNING, Job

log = logging.getLogger("studio.scheduler")

LOCK_NAME = "scheduler.lock"
LOG_NAME = "scheduler.log"
DEFAULT_POLL_SECONDS = 0.5
DEFAULT_IDLE_EXIT_SECONDS = 600.0
CANCEL_GRACE_SECONDS = 10.0
START_GRACE_SECONDS = 60.0
DEFAULT_WORKER_CMD = (sys.executable, "-m", "studio.worker", "{job_id}")

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

_REPO_ROOT = Path(__file__).resolve().parents[2]
_spawned: list[subprocess.Popen] = []
_in_process_stop: threading.Event | None = None


# --------------------------------------------------------------------------- device slots
@dataclass(frozen=True)
class Slot:
    """A place one job runs: ``cpu:0``… or ``cuda:0``… (GPU numbers as the scheduler sees them)."""

    name: str
    cuda_visible_devices: str  # what the worker gets as CUDA_VISIBLE_DEVICES ("" hides every GPU)

    @property
    def is_gpu(self) -> bool:
        return self.name.startswith("cuda")


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


def pick_slot(device_request: str, slots: list[Slot], busy: set[str]) -> Slot | None:
    """The free slot a job asking for ``device_request`` gets now, or None to keep it waiting.

    Raises ``ValueError`` (with the reason for the user) when no slot here can ever run it.
    """
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
    return next((slot for slot in wanted if slot.name not in busy), None)


# --------------------------------------------------------------------------- processes
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


def child_env() -> dict[str, str]:
    """The environment for the scheduler and its workers: same store, same MLflow, the studio importable."""
    settings.keep_mlflow_offline()
    env = dict(os.environ)
    env["STUDIO_HOME"] = str(settings.studio_home())
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri()
    paths = [str(_REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


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


# --------------------------------------------------------------------------- the loop
class Scheduler:
    """One scheduling loop. ``tick()`` is a single pass; the daemon calls it every ``poll`` seconds."""

    def __init__(
        self,
        *,
        worker_cmd: list[str] | tuple[str, ...] | None = None,
        cancel_grace: float = CANCEL_GRACE_SECONDS,
        gpus: list[str] | None = None,
        cpu_slots: int | None = None,
        keep_warm: bool = True,
    ) -> None:
        self.worker_cmd = list(worker_cmd or DEFAULT_WORKER_CMD)
        self.cancel_grace = cancel_grace
        self.slots = device_slots(gpus, cpu_slots)
        self.children: dict[str, subprocess.Popen] = {}
        self._background: list[threading.Thread] = []
        # Warm workers: one per free slot, torch and Lightning already imported, waiting on stdin for a
        # job id. Only with the real worker (tests that pass a fake worker command get cold starts).
        self.keep_warm = worker_cmd is None and keep_warm
        self.standby: dict[str, subprocess.Popen] = {}
        self._standby_started: dict[str, float] = {}

    def tick(self) -> None:
        self.reap()
        self.reconcile()
        self.enforce_cancels()
        self.fill_slots()
        self.warm_up()

    # ---- dead workers
    def reap(self) -> None:
        """Collect the exit status of workers this scheduler started; a job they left running has failed."""
        for job_id, proc in list(self.children.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.children[job_id]
            try:
                job = store.get_job(job_id)
            except JobError:
                continue  # deleted meanwhile
            if job.state == RUNNING and job.pid == proc.pid:
                self._close_dead(job, exit_code=code)

    def reconcile(self) -> None:
        """Running jobs whose worker is gone (killed, or the machine restarted) are settled by
        :meth:`_close_dead`: interrupted, cancelled or failed."""
        now = time.time()
        for job in store.list_jobs(states=[RUNNING]):
            if job.id in self.children:
                continue  # ours: reap() knows its exit status
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
            if not worker_alive(job.pid, job.pid_create_time):
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
        for job in store.list_jobs(states=[RUNNING]):
            if not job.cancel_requested or job.cancel_requested_at is None:
                continue
            if now - job.cancel_requested_at < self.cancel_grace:
                continue
            signal_worker(job, signal.SIGKILL)
            reason = REASON_CANCEL_KILLED.format(grace=self.cancel_grace)
            if store.finish_job(job.id, CANCELLED, reason=reason):
                log.warning("job %s: worker ignored the cancel request; killed", job.id)
                self._in_background(end_mlflow_run, job.mlflow_run_id, "KILLED", None, job.id, CANCELLED)

    # ---- queued jobs into free slots
    def fill_slots(self) -> None:
        queued = store.queued_jobs()
        if not queued:
            return
        busy = {job.device for job in store.list_jobs(states=[RUNNING]) if job.device}
        for job in queued:
            try:
                slot = pick_slot(job.device_request, self.slots, busy)
            except ValueError as err:
                if store.finish_job(job.id, FAILED, reason=str(err)):
                    log.warning("job %s: %s", job.id, err)
                continue
            if slot is None or not store.claim_job(job.id, slot.name):
                continue  # no room for it yet, or another scheduler took it
            busy.add(slot.name)
            self.launch(job, slot)

    def worker_env(self, slot: Slot) -> dict[str, str]:
        env = child_env()
        env["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible_devices
        env["STUDIO_JOB_SLOT"] = slot.name
        cpu_share = sum(1 for s in self.slots if not s.is_gpu)
        if not slot.is_gpu and cpu_share > 1:
            # Several CPU jobs at once: share the cores instead of each one taking all of them.
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cpu_share)))
        return env

    def launch(self, job: Job, slot: Slot) -> None:
        """Start the worker for a claimed job in its own session, its output into the job's log.
        A warm worker waiting on this slot takes the job when there is one (no import wait)."""
        if self._hand_to_standby(job, slot):
            return
        env = self.worker_env(slot)
        cmd = [part.replace("{job_id}", job.id) for part in self.worker_cmd]
        try:
            with open(store.log_path(job.id), "ab") as out:
                proc = subprocess.Popen(
                    cmd,
                    cwd=store.job_dir(job.id),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
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
                proc.stdin.close()
            except (OSError, psutil.NoSuchProcess):
                store.set_worker(job.id, None, None)
            else:
                self.children[job.id] = proc
                log.info("job %s: handed to warm worker %s on %s", job.id, proc.pid, slot.name)
                return True
        self._retire(proc)
        return False

    def warm_up(self) -> None:
        """Keep one warm worker per free slot (started when the slot has nothing to run, so its imports
        never compete with a training job for the CPU)."""
        if not self.keep_warm:
            return
        busy = {job.device for job in store.list_jobs(states=[RUNNING]) if job.device}
        for slot in self.slots:
            proc = self.standby.get(slot.name)
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                self.standby.pop(slot.name)
            if slot.name in busy or time.monotonic() - self._standby_started.get(slot.name, -1e9) < 30:
                continue  # in use, or a warm worker died young: do not start one in a loop
            self._standby_started[slot.name] = time.monotonic()
            try:
                with open(settings.studio_home() / "standby-worker.log", "ab") as out:
                    self.standby[slot.name] = subprocess.Popen(
                        [sys.executable, "-m", "studio.worker", "--standby"],
                        cwd=settings.studio_home(),
                        env=self.worker_env(slot),
                        stdin=subprocess.PIPE,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            except OSError as err:
                log.warning("could not start a warm worker for %s: %s", slot.name, err)

    def retire_standby(self) -> None:
        """Let the warm workers go (they exit when their stdin closes)."""
        for proc in self.standby.values():
            self._retire(proc)
        self.standby.clear()

    @staticmethod
    def _retire(proc: subprocess.Popen) -> None:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(OSError):
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

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
        return bool(self.children) or store.count_active() > 0


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
    for proc in list(_spawned):  # reap daemons that exited while idle, so none lingers as a zombie
        if proc.poll() is not None:
            _spawned.remove(proc)
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
    with open(home / LOG_NAME, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=home,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _spawned.append(proc)
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
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.remove(proc)
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
