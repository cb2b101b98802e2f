"""The job worker: ``python -m studio.cli.worker JOB_ID`` trains one stored job and keeps its row current
(the entry lives in :mod:`studio.cli.worker`, which adds a search's trial hooks; on a Ray node the same
:func:`train_job` runs with the same hooks, writing ``@studio`` lines instead of the job store).

The scheduler starts it in its own process session with the chosen device in ``CUDA_VISIBLE_DEVICES``
(and the slot name in ``STUDIO_JOB_SLOT``); run by hand it claims the job itself. It calls the same
:func:`studio.engine.training.train` as the CLI, writes progress into the job store, stops when the job's
``cancel_requested`` flag is set or SIGTERM arrives, and always ends the job as succeeded, failed (with
a plain reason) or cancelled before it exits.

A job on several devices (``training.devices``) gets all its slots' GPUs in ``CUDA_VISIBLE_DEVICES`` (and
the slot names joined with commas in ``STUDIO_JOB_SLOT``). The worker is then rank 0 of the run: it claims
the job, owns the MLflow run, reports progress and writes checkpoints and the bundle, as for one device;
:func:`~studio.engine.training.train` starts the other ranks as its own child processes
(:mod:`studio.engine.ddp`), which never touch the job store.

Training saves a checkpoint in the job's folder at the end of every epoch. A resumed job (queued again
by ``jobs resume``, its MLflow run id kept) continues from the latest one. The checkpoints are removed
when the job succeeds (after its bundle is written) or fails; a cancelled job keeps them, so it can be
resumed, and so does a job stopped by a full disk (interrupted: free space, then resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.errors import JobError, StudioError
from studio.engine.checkpoints import latest_checkpoint
from studio.jobs import store
from studio.jobs.store import CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING, SUCCEEDED, Job

log = logging.getLogger("studio.jobs.worker")

POLL_SECONDS = 0.5  # the longest a cancel request waits for the worker to look at the store

REASON_CANCELLED = "Cancelled on request."
REASON_GPU_MEMORY = "The GPU ran out of memory: lower the batch size or the image size."
REASON_MEMORY = (
    "The machine ran out of memory: lower the batch size, use fewer columns or close other programs."
)


class StopFlag:
    """Set by SIGTERM (a plain attribute: signal handlers must not take locks)."""

    def __init__(self) -> None:
        self.signalled = False

    def install(self) -> None:
        def on_sigterm(signum: int, frame: Any) -> None:
            self.signalled = True

        signal.signal(signal.SIGTERM, on_sigterm)


class StoreLink:
    """Where a job's state goes while it trains on this machine: its row in the job store. (On a Ray node
    the same hooks write ``@studio`` lines instead, :class:`studio.jobs.executors.ray.LineLink`.)"""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def set_run(self, run_id: str, experiment_id: str) -> None:
        store.set_run(self.job_id, run_id, experiment_id)

    def set_progress(self, **progress: Any) -> bool:
        """Write the progress; True when a cancel was asked for meanwhile."""
        return store.set_progress(self.job_id, **progress)

    def add_note(self, sentence: str) -> None:
        store.add_note(self.job_id, sentence)

    def cancel_requested(self) -> bool:
        return store.cancel_requested(self.job_id)

    def set_trial_state(self, trial_state: str) -> None:
        store.set_trial_state(self.job_id, trial_state)


WrapHooks = Callable[[Job, Any], Any]
"""What the process that runs jobs adds to every job's hooks (``hooks -> hooks``): a search's trial
reports to its study (:mod:`studio.cli.worker` passes :func:`studio.search.pruning.job_hooks`)."""


def make_hooks(link: Any, flag: StopFlag):
    """Training hooks that keep the job's state current through ``link`` (:class:`StoreLink`, or the Ray
    node's lines) and turn a cancel request or SIGTERM into ``should_stop()``."""
    from studio.engine.training import TrainHooks

    class JobHooks(TrainHooks):
        def __init__(self) -> None:
            self.stop_seen = False
            self.run_id: str | None = None
            self._cancel = False
            self._pending: Any = None
            self._next_write = 0.0
            self._next_poll = 0.0

        def on_run_started(self, run_id: str, experiment_id: str) -> None:
            self.run_id = run_id
            link.set_run(run_id, experiment_id)

        def on_progress(self, progress: Any) -> None:
            self._pending = progress
            self._write_if_due()

        def on_note(self, sentence: str) -> None:
            link.add_note(sentence)

        def set_trial_state(self, trial_state: str) -> None:
            link.set_trial_state(trial_state)

        def after_run(self, spec: Any) -> None:
            """After the run ended well (a search's trial reports its final score here)."""

        def should_stop(self) -> bool:
            self._write_if_due()
            now = time.monotonic()
            if not (flag.signalled or self._cancel) and now >= self._next_poll:
                self._next_poll = now + POLL_SECONDS
                self._cancel = link.cancel_requested()
            if flag.signalled or self._cancel:
                self.stop_seen = True
            return self.stop_seen

        def flush(self) -> None:
            self._next_write = 0.0
            self._write_if_due()

        def _write_if_due(self) -> None:
            now = time.monotonic()
            if self._pending is None or now < self._next_write:
                return
            p, self._pending = self._pending, None
            self._next_write = now + POLL_SECONDS
            self._cancel = (
                link.set_progress(
                    epoch=p.epoch,
                    max_epochs=p.max_epochs,
                    step=p.step,
                    total_steps=p.total_steps,
                    fraction=p.fraction,
                    eta_seconds=p.eta_seconds,
                    metrics=p.metrics,
                )
                or self._cancel
            )

    return JobHooks()


def spec_for_slot(spec: Any, slot: str | None) -> Any:
    """A GPU worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``), which is then GPU 0."""
    if slot and slot.startswith("cuda") and spec.training.device.startswith("cuda:"):
        return spec.with_changes(**{"training.device": "cuda:0"})
    return spec


def _is_gpu_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return type(err).__name__ == "OutOfMemoryError" or ("out of memory" in text and "CUDA" in text)


def plain_reason(err: BaseException, log_file: Any) -> str:
    """The sentence a user sees for an exception that escaped training."""
    if isinstance(err, StudioError):
        return str(err)
    if _is_gpu_out_of_memory(err):
        return REASON_GPU_MEMORY
    if isinstance(err, MemoryError):
        return REASON_MEMORY
    first = (str(err).strip().splitlines() or [""])[0][:300]
    detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return f"The training process crashed: {detail} (full log: {log_file})."


def take_job(job_id: str) -> Job | None:
    """Register this process as the job's worker; None when the job is not this worker's to run."""
    import psutil

    from studio.jobs.executors.local import worker_alive

    job = store.get_job(job_id)
    if job.state == QUEUED:
        store.claim_job(job_id, os.environ.get("STUDIO_JOB_SLOT") or f"direct:{os.getpid()}")
        job = store.get_job(job_id)
    if job.state != RUNNING:
        log.info("job %s is %s; nothing to do", job_id, job.state)
        return None
    if job.pid not in (None, os.getpid()) and worker_alive(job.pid, job.pid_create_time):
        log.info("job %s is already run by process %s", job_id, job.pid)
        return None
    store.set_worker(job_id, os.getpid(), psutil.Process().create_time())
    return store.get_job(job_id)


def run_job(
    job_id: str, train_fn: Callable[..., Any] | None = None, wrap_hooks: WrapHooks | None = None
) -> int:
    """Train a stored job to its end; returns 0 when it succeeded. ``train_fn`` replaces
    :func:`studio.engine.training.train` (tests pass a fast stand-in that uses the same hooks);
    ``wrap_hooks`` is what the worker's process adds to the hooks (see :data:`WrapHooks`)."""
    flag = StopFlag()
    flag.install()
    try:
        job = take_job(job_id)
    except JobError as err:
        log.error("%s", err)
        return 1
    if job is None:
        return 1
    slot = os.environ.get("STUDIO_JOB_SLOT")
    log.info("job %s: pid %s, slot %s, spec %s", job_id, os.getpid(), slot or "-", job.name)
    state, reason, outcome = FAILED, "The worker stopped without a result.", {}
    if job.action:  # work on a trained run's model (explain, compress), not training
        try:
            state, reason = action_job(job, StoreLink(job_id), flag, store.log_path(job_id))
        finally:
            _finish(job_id, state, reason, {})
        return 0 if state == SUCCEEDED else 1
    try:
        state, reason, outcome = train_job(
            job,
            StoreLink(job_id),
            flag,
            wrap_hooks=wrap_hooks,
            train_fn=train_fn,
            spec=spec_for_slot(job.spec, slot),
            bundle_out=store.job_dir(job_id) / "model.zip",
            checkpoint_dir=store.checkpoint_dir(job_id),
            log_file=store.log_path(job_id),
        )
    finally:
        _finish(job_id, state, reason, outcome)
        if state in (SUCCEEDED, FAILED):  # ended for good (the bundle is written): nothing to resume
            store.remove_checkpoints(job_id)
    if state == SUCCEEDED:
        log.info("job %s: succeeded", job_id)
    return 0 if state == SUCCEEDED else 1


def train_job(
    job: Job,
    link: Any,
    flag: StopFlag,
    *,
    spec: Any,
    bundle_out: Path,
    checkpoint_dir: Path,
    log_file: Any,
    wrap_hooks: WrapHooks | None = None,
    train_fn: Callable[..., Any] | None = None,
    resume_run_id: str | None = None,
    **train_args: Any,
) -> tuple[str, str | None, dict[str, Any]]:
    """Train ``job`` with the hooks every job gets, here or on a Ray node: its state through ``link``,
    cancel and SIGTERM through ``flag``, plus ``wrap_hooks``. Returns how it ended: ``(state, reason,
    outcome)`` with ``outcome`` the test metrics and bundle path of a job that succeeded. A job with a
    checkpoint in ``checkpoint_dir`` and an MLflow run continues that run (unless ``resume_run_id``
    says which); ``train_args`` go to :func:`~studio.engine.training.train` (e.g. ``run_tags``)."""
    from studio.engine.training import CheckpointSpaceError, TrainingCancelled

    hooks = make_hooks(link, flag)
    if wrap_hooks is not None:
        hooks = wrap_hooks(job, hooks)
    outcome: dict[str, Any] = {}
    try:
        if hooks.should_stop():
            raise TrainingCancelled("Cancelled before training started.")
        if train_fn is None:
            from studio.engine.training import train as train_fn
        if resume_run_id is None and job.mlflow_run_id and latest_checkpoint(checkpoint_dir):
            resume_run_id = job.mlflow_run_id
        result = train_fn(
            spec,
            job_id=job.id,
            hooks=hooks,
            bundle_out=bundle_out,
            progress_bar=False,
            checkpoint_dir=checkpoint_dir,
            resume_run_id=resume_run_id,
            **train_args,
        )
        if result.run_id and result.run_id != hooks.run_id:
            link.set_run(result.run_id, result.experiment_id)
        hooks.after_run(spec)  # e.g. a trial's final score, and a small table's other folds
        state, reason = SUCCEEDED, getattr(result, "note", None)  # e.g. "kept the best epoch, 9"
        outcome = {
            "test_metrics": dict(result.test_metrics or {}),
            "quality": dict(getattr(result, "quality", None) or {}),
            "bundle_path": str(result.bundle_path) if result.bundle_path else None,
        }
    except BaseException as err:  # noqa: BLE001 - every way out must end the job
        if hooks.stop_seen or flag.signalled or isinstance(err, TrainingCancelled):
            state, reason = CANCELLED, getattr(hooks, "stop_reason", None) or REASON_CANCELLED
            if not isinstance(err, TrainingCancelled):
                # Stopped some other way (e.g. Lightning's own SIGTERM exit): train() closed the run FAILED.
                from studio.jobs.runs import end_mlflow_run

                end_mlflow_run(hooks.run_id, "KILLED")
        elif isinstance(err, CheckpointSpaceError) and latest_checkpoint(checkpoint_dir) is not None:
            state, reason = INTERRUPTED, str(err)  # the disk is full: free space, then resume
        else:
            state, reason = FAILED, plain_reason(err, log_file)
            if not isinstance(err, StudioError):
                traceback.print_exc()
        log.info("job %s: %s (%s)", job.id, state, reason)
    finally:
        hooks.flush()
    return state, reason, outcome


def action_job(job: Job, link: Any, flag: StopFlag, log_file: Any) -> tuple[str, str | None]:
    """Run an action job (:func:`studio.jobs.store.insert_action_job`) on its parent's model: its result
    goes into the job's folder (``result.json``) and the parent's MLflow run. Returns ``(state, reason)``."""
    from studio.engine.analysis import AnalysisCancelled, run_analysis

    def progress(fraction: float) -> None:
        """Store how far it is (0-1); raises :class:`AnalysisCancelled` when a stop was asked for."""
        if flag.signalled or link.set_progress(
            epoch=None, max_epochs=None, step=None, total_steps=None, fraction=fraction, eta_seconds=None,
            metrics={},
        ):
            raise AnalysisCancelled(REASON_CANCELLED)

    try:
        progress(0.0)
        parent = store.get_job(job.parent_id or "")
        sentence = run_analysis(
            job.action,
            parent.spec,
            bundle=Path(parent.bundle_path) if parent.bundle_path else None,
            run_id=parent.mlflow_run_id,
            options=job.options,
            out_folder=store.job_dir(job.id),
            progress=progress,
        )
        return SUCCEEDED, sentence
    except AnalysisCancelled:
        return CANCELLED, REASON_CANCELLED
    except BaseException as err:  # noqa: BLE001 - every way out must end the job
        if flag.signalled:
            return CANCELLED, REASON_CANCELLED
        if not isinstance(err, StudioError):
            traceback.print_exc()
        return FAILED, plain_reason(err, log_file).replace("The training process", "The process", 1)


def _finish(job_id: str, state: str, reason: str | None, outcome: dict[str, Any]) -> None:
    for attempt in range(5):
        try:
            store.finish_job(job_id, state, reason=reason, only_pid=os.getpid(), **outcome)
            return
        except Exception:  # a store locked for 30 s: try again rather than leave the job running
            if attempt == 4:
                raise
            time.sleep(1.0)


def warm_up() -> None:
    """What every run needs, done while the worker waits: the training stack imported, MLflow's client
    and store ready, and onnx, which the bundle's ONNX export imports at the end of every run (1.4 CPU-s
    here; the run would pay it after the user pressed Train). (MLflow's scan of the installed packages,
    1.4 s, is not needed: a bundle is saved without it, see :func:`studio.bundle.writer._no_package_scan`.)"""
    import onnx  # noqa: F401

    import lightning_modules.callbacks  # noqa: F401  (torch, Lightning, torchmetrics)
    import lightning_modules.tabular.data  # noqa: F401
    import lightning_modules.tabular.module  # noqa: F401
    import studio.bundle.writer  # noqa: F401
    import studio.engine.training  # noqa: F401
    import studio.modalities.tabular.modality  # noqa: F401
    from studio import tracking

    tracking.client()  # mlflow and its store, ready


MAX_JOBS_PER_WORKER = 25
"""A warm worker that ran this many jobs exits (a fresh one takes its place): whatever a long-lived
process accumulates (allocator caches, fragments) cannot grow for ever."""
REUSE_STATES = (SUCCEEDED, CANCELLED)
"""A worker goes back to waiting only after a job that ended one of these ways: after a failure (a
crash, running out of memory) a fresh process is the safer start for the next job."""


def standby(wrap_hooks: WrapHooks | None = None) -> int:
    """A warm worker: import the training stack now, then wait for the scheduler to write a job id on
    stdin, and run that job (its output into the job's log, from the job's folder). Afterwards it
    waits for the next job id on the same stdin, so a queue of jobs (a search's trials) pays the
    imports once, unless the job did not end well (see :data:`REUSE_STATES`) or the worker has run
    :data:`MAX_JOBS_PER_WORKER` jobs. EOF: exit."""
    from studio.jobs.executors.local import READY_FD_ENV

    try:
        warm_up()
    except Exception:  # the job still runs (and reports a real problem in its own log)
        log.exception("warm-up failed; the next job starts as if cold")
    else:
        log.info("warm: the training stack is imported; waiting for a job")
    home = os.getcwd()
    sys.stdout.flush()
    sys.stderr.flush()
    waiting_out, waiting_err = os.dup(1), os.dup(2)  # the standby log, between jobs
    code = 0
    for ran in range(1, MAX_JOBS_PER_WORKER + 1):
        line = sys.stdin.readline().strip()
        if not line:
            return code
        log_fd = os.open(store.log_path(line), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.chdir(store.job_dir(line))
        code = run_job(line, wrap_hooks=wrap_hooks)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(waiting_out, 1)
        os.dup2(waiting_err, 2)
        os.chdir(home)
        try:
            state = store.get_job(line).state
        except JobError:  # deleted meanwhile
            state = None
        ready = os.environ.get(READY_FD_ENV)
        if not ready or state not in REUSE_STATES or ran == MAX_JOBS_PER_WORKER:
            return code
        _release_memory()
        log.info("job %s ended %s; waiting for the next job (%d run)", line, state, ran)
        try:
            os.write(int(ready), f"ready {line}\n".encode())
        except (OSError, ValueError):  # nobody listens: the scheduler will not send another job
            return code
    return code


def _release_memory() -> None:
    """What the last job left: its objects, and the GPU memory torch keeps cached for reuse."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None, wrap_hooks: WrapHooks | None = None) -> int:
    """The worker process on this machine (see :mod:`studio.cli.worker`, which passes ``wrap_hooks``)."""
    parser = argparse.ArgumentParser(
        prog="python -m studio.cli.worker", description="Run one stored training job."
    )
    parser.add_argument("job_id", nargs="?")
    parser.add_argument("--standby", action="store_true", help="import first, then read the job id on stdin")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if args.standby:
        return standby(wrap_hooks)
    if not args.job_id:
        parser.error("give a JOB_ID (or --standby)")
    return run_job(args.job_id, wrap_hooks=wrap_hooks)


if __name__ == "__main__":  # the entry moved up, where a search's trial hooks are added
    print("error: the worker is started with `python -m studio.cli.worker`", file=sys.stderr)
    raise SystemExit(2)
