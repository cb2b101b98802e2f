"""Resuming jobs: a real job started through the real scheduler and worker, killed with SIGKILL after a
checkpoint, is "interrupted — can resume"; ``jobs resume`` continues it in the same MLflow run to the
result an uninterrupted run of the same seed reaches. Also: what a machine restart leaves, which jobs
refuse to resume, and what the worker keeps or removes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from studio import jobs, tracking
from studio.core.errors import JobError
from studio.core.settings import child_env
from studio.core.spec import RunSpec
from studio.engine.checkpoints import checkpoint_file
from studio.engine.training import CheckpointSpaceError
from studio.jobs import store, worker
from tests.jobs.jobhelpers import FAKE_WORKER, fake_spec, tiny_csv, wait_until

TOLERANCE = 1e-6  # weights, metrics and curves of the resumed run against the straight run


def spec(dataset_id: str, name: str) -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "y", "seed": 7},
            "architecture": {"name": "mlp", "params": {"dropout": 0.2}},
            "training": {"epochs": 7, "batch_size": 16},
            "scheduler": {"name": "cosine"},
            "early_stopping": {"enabled": False},
        }
    )


def run_here(job_spec: RunSpec) -> jobs.Job:
    """The worker's own code in this process (no scheduler): the uninterrupted reference."""
    job = jobs.submit_job(job_spec, start_scheduler=False)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        worker.run_job(job.id)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return jobs.get_job(job.id)


def studio_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, env=child_env(), timeout=120
    )


def weights(bundle: str) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(bundle) as zf:
        name = next(n for n in zf.namelist() if n.endswith("weights.pt"))
        return torch.load(io.BytesIO(zf.read(name)), weights_only=True)


def test_a_killed_worker_leaves_an_interrupted_job_that_resumes_to_the_straight_result(
    jobs_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.data import add_csv

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")  # a checkpoint at the end of every epoch
    dataset = add_csv(tiny_csv(tmp_path, rows=200))
    straight = run_here(spec(dataset.id, "straight"))
    assert straight.state == jobs.SUCCEEDED, straight.reason

    # Each epoch waits 0.4 s at its end (test-only switch), so the worker is killed mid-run.
    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", "0.4")
    job = jobs.submit_job(spec(dataset.id, "interrupted"))
    saved = wait_until(lambda: (c := store.job_checkpoint(job.id)) and c.epoch >= 2 and c, timeout=180)
    running = jobs.get_job(job.id)
    assert running.state == jobs.RUNNING
    os.kill(running.pid, signal.SIGKILL)

    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=15)
    saved = store.job_checkpoint(job.id)
    assert ended.state == jobs.INTERRUPTED and ended.can_resume, ended.reason
    assert ended.reason.startswith("The worker process stopped unexpectedly (signal 9)")
    assert f"Its progress up to epoch {saved.epoch} is saved" in ended.reason
    assert f"python -m studio jobs resume {job.id}" in ended.reason
    assert saved.epoch < 7
    killed = wait_until(lambda: (r := tracking.get_run(ended.mlflow_run_id)).status != "RUNNING" and r)
    assert killed.status == "KILLED"  # never FINISHED while it is not
    listing = studio_cli("jobs", "list")
    assert f"{job.id}  interrupted — can resume" in listing.stdout
    shown = studio_cli("jobs", "show", job.id).stdout
    assert "interrupted — can resume" in shown and f"jobs resume {job.id}" in shown

    asked = time.monotonic()
    resumed = studio_cli("jobs", "resume", job.id)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"{job.id}: queued to resume after epoch {saved.epoch}")
    # Resuming clears the time left; the resumed worker's first progress report sets it again.
    restarted = wait_until(
        lambda: (j := jobs.get_job(job.id)).state == jobs.RUNNING and j.eta_seconds is not None and j,
        timeout=120,
    )
    training_again = time.monotonic() - asked
    wait_until(lambda: (c := store.job_checkpoint(job.id)) is None or c.epoch > saved.epoch, timeout=120)
    first_epoch = time.monotonic() - asked - 0.4  # without the test's own wait at the end of the epoch
    done = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=180)
    assert restarted.mlflow_run_id == ended.mlflow_run_id
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()[-3000:]}"

    assert done.mlflow_run_id == ended.mlflow_run_id  # the same MLflow run, finished
    run = tracking.get_run(done.mlflow_run_id)
    assert run.status == "FINISHED" and tracking.TAG_FAILURE not in run.tags
    assert done.note == f"Resumed at epoch {saved.epoch + 1} from its saved progress."
    assert store.job_checkpoint(job.id) is None  # succeeded and bundled: the checkpoints are gone

    ours, reference = weights(done.bundle_path), weights(straight.bundle_path)
    difference = max(float((ours[k].float() - reference[k].float()).abs().max()) for k in reference)
    assert done.test_metrics == pytest.approx(straight.test_metrics, abs=TOLERANCE)
    expected = tracking.metric_history(straight.mlflow_run_id)
    got = tracking.metric_history(done.mlflow_run_id)
    assert got.keys() == expected.keys()
    for key, points in expected.items():
        assert [s for s, _ in got[key]] == [s for s, _ in points], key  # continued, nothing twice
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in points], abs=TOLERANCE), key
    print(
        f"\nresumed after epoch {saved.epoch}: largest weight difference {difference:g} "
        f"(tolerance {TOLERANCE:g}); training again {training_again:.1f} s and the first new epoch done "
        f"{first_epoch:.1f} s after `jobs resume`"
    )
    assert difference <= TOLERANCE


def _dead_worker() -> tuple[int, float]:
    import psutil

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(gone.pid).create_time()
    gone.wait()
    return gone.pid, created


def _fake_checkpoint(job_id: str, epoch: int) -> None:
    folder = store.checkpoint_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint_file(folder, epoch).write_bytes(b"saved state")


def test_after_a_machine_restart_jobs_with_a_checkpoint_are_interrupted_not_failed(jobs_home: Path) -> None:
    """The store says running, the recorded processes are gone; one job saved a checkpoint."""
    experiment = tracking.ensure_experiment("ds-fake")
    saved_job = jobs.submit_job(fake_spec("saved"), start_scheduler=False)
    bare_job = jobs.submit_job(fake_spec("bare"), start_scheduler=False)
    for job, slot in ((saved_job, "cpu:0"), (bare_job, "cpu:1")):
        store.claim_job(job.id, slot)
        store.set_worker(job.id, *_dead_worker())
        store.set_run(job.id, tracking.client().create_run(experiment).info.run_id, experiment)
    _fake_checkpoint(saved_job.id, 3)

    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    saved = wait_until(lambda: not (j := jobs.get_job(saved_job.id)).is_active and j)
    bare = wait_until(lambda: not (j := jobs.get_job(bare_job.id)).is_active and j)

    assert saved.state == jobs.INTERRUPTED and saved.can_resume
    assert "Its progress up to epoch 3 is saved" in saved.reason
    assert bare.state == jobs.FAILED and not bare.can_resume
    for job, status in ((saved, "KILLED"), (bare, "FAILED")):
        run = wait_until(lambda job=job: (r := tracking.get_run(job.mlflow_run_id)).status != "RUNNING" and r)
        assert run.status == status  # neither looks FINISHED
    assert "resume" in tracking.get_run(saved.mlflow_run_id).tags[tracking.TAG_FAILURE]


def test_only_interrupted_or_cancelled_jobs_with_a_checkpoint_resume(jobs_home: Path) -> None:
    def job_in(state: str, checkpoint: bool, run: bool = True) -> jobs.Job:
        job = jobs.submit_job(fake_spec(state), start_scheduler=False)
        if state != jobs.QUEUED:
            store.claim_job(job.id, f"cpu:{job.id}")
            if run:
                store.set_run(job.id, "run-1", "0")
            if state != jobs.RUNNING:
                store.finish_job(job.id, state, reason="ended")
        if checkpoint:
            _fake_checkpoint(job.id, 2)
        return jobs.get_job(job.id)

    refusals = {
        "is waiting for a device already": job_in(jobs.QUEUED, True),
        "is training already": job_in(jobs.RUNNING, True),
        "has finished; there is nothing to resume": job_in(jobs.SUCCEEDED, True),
        "failed, and a failed run cannot be resumed": job_in(jobs.FAILED, True),
        "stopped before it finished its first epoch": job_in(jobs.INTERRUPTED, False),
    }
    for words, job in refusals.items():
        with pytest.raises(JobError, match=words):
            jobs.resume_job(job.id, start_scheduler=False)
        assert not job.can_resume

    cli = studio_cli("jobs", "resume", refusals["has finished; there is nothing to resume"].id)
    assert (
        cli.returncode == 2
        and len(cli.stderr.strip().splitlines()) == 1
        and "nothing to resume" in cli.stderr
    )

    for state in (jobs.INTERRUPTED, jobs.CANCELLED):
        job = job_in(state, True)
        assert job.can_resume
        queued = jobs.resume_job(job.id, start_scheduler=False)
        assert queued.state == jobs.QUEUED and queued.mlflow_run_id == "run-1"
        assert queued.reason is None and queued.pid is None and not queued.cancel_requested


def test_the_worker_removes_checkpoints_when_a_job_ends_for_good_and_keeps_them_otherwise(
    jobs_home: Path,
) -> None:
    def run_with(train_fn) -> jobs.Job:
        job = jobs.submit_job(fake_spec(), start_scheduler=False)
        previous = signal.getsignal(signal.SIGTERM)
        try:
            worker.run_job(job.id, train_fn=train_fn)
        finally:
            signal.signal(signal.SIGTERM, previous)
        return jobs.get_job(job.id)

    def saves_then(outcome):
        def train_fn(spec, *, job_id, hooks, bundle_out, progress_bar, checkpoint_dir, resume_run_id):
            hooks.on_run_started(f"run-{job_id}", "0")
            checkpoint_dir.mkdir(parents=True)
            checkpoint_file(checkpoint_dir, 2).write_bytes(b"saved state")
            if isinstance(outcome, BaseException):
                raise outcome
            return SimpleNamespace(run_id=None, experiment_id=None, test_metrics={}, bundle_path=None)

        return train_fn

    assert run_with(saves_then("ok")).checkpoint is None  # succeeded
    assert run_with(saves_then(ZeroDivisionError("bug"))).checkpoint is None  # failed for good
    full = run_with(saves_then(CheckpointSpaceError("There is not enough free disk space …")))
    assert full.state == jobs.INTERRUPTED and full.checkpoint.epoch == 2 and full.can_resume
    assert full.reason.startswith("There is not enough free disk space")
