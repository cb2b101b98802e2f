"""A stand-in for ``python -m studio.cli.worker``: the real worker code (store, hooks, cancel flag, SIGTERM,
final state) around a fast fake ``train()``. The job's spec name says what the fake does, e.g.
``"fake epoch_seconds=0.2 crash=oom"``; ``epochs`` comes from the spec. Every start is appended to
``STUDIO_HOME/fake_runs.log`` so tests can count how often each job ran."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from studio.core.settings import studio_home
from studio.engine.training import Progress, TrainingCancelled, TrainResult
from studio.jobs import worker

STEPS_PER_EPOCH = 5


def options(name: str | None) -> dict[str, str]:
    return dict(part.split("=", 1) for part in (name or "").split() if "=" in part)


def fake_train(spec, *, job_id, hooks, bundle_out, progress_bar, **_):
    opts = options(spec.name)
    with open(studio_home() / "fake_runs.log", "a") as runs:
        runs.write(f"{job_id} {os.getpid()} {os.environ.get('STUDIO_JOB_SLOT')}\n")
    if opts.get("stubborn"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not opts.get("norun"):  # "norun=1": no run id, so cleaning up after it never imports mlflow
        hooks.on_run_started(f"fake-run-{job_id}", "0")
    epochs = spec.training.epochs
    pause = float(opts.get("epoch_seconds", "0.02")) / STEPS_PER_EPOCH
    started = time.monotonic()
    total = epochs * STEPS_PER_EPOCH
    for step in range(total):
        if not opts.get("stubborn") and hooks.should_stop():
            raise TrainingCancelled("Stopped on request.")
        time.sleep(pause)
        done = (step + 1) / total
        hooks.on_progress(
            Progress(
                epoch=step // STEPS_PER_EPOCH + 1,
                max_epochs=epochs,
                step=step + 1,
                total_steps=total,
                fraction=done,
                eta_seconds=(time.monotonic() - started) / done * (1 - done),
                metrics={"train/loss": 1.0 / (step + 1)},
            )
        )
    crash = opts.get("crash")
    if crash == "oom":
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if crash == "memory":
        raise MemoryError()
    if crash == "bug":
        raise ZeroDivisionError("division by zero")
    if crash == "exit":
        os._exit(3)
    bundle = Path(bundle_out)
    bundle.write_bytes(b"fake bundle")
    return TrainResult(f"fake-run-{job_id}", "0", {"test/accuracy": 0.9}, bundle, "FINISHED")


if __name__ == "__main__":
    raise SystemExit(worker.run_job(sys.argv[1], train_fn=fake_train))
