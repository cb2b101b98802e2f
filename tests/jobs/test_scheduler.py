"""The scheduler daemon and the worker, with real processes and a fast fake ``train()``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from studio import jobs
from studio.core.settings import child_env
from studio.jobs import store
from studio.jobs.executors.local import worker_alive
from studio.jobs.scheduler import scheduler_pid
from tests.jobs.jobhelpers import FAKE_WORKER, fake_runs, fake_spec, wait_until

SUBMITTER = textwrap.dedent(
    """
    import sys
    from studio.jobs import submit_job
    from tests.jobs.jobhelpers import FAKE_WORKER, fake_spec
    from studio.jobs import ensure_scheduler
    ids = [submit_job(fake_spec("fake epoch_seconds=0.05"), start_scheduler=False).id for _ in range(3)]
    ensure_scheduler(worker_cmd=FAKE_WORKER)
    print(" ".join(ids))
    """
)


def test_jobs_queued_at_once_from_several_processes_each_run_exactly_once(
    jobs_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_CPU_SLOTS", "3")
    tabs = [
        subprocess.Popen([sys.executable, "-c", SUBMITTER], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = [job_id for tab in tabs for job_id in tab.communicate(timeout=60)[0].split()]
    assert len(ids) == 12 and len(set(ids)) == 12

    done = wait_until(lambda: all(not j.is_active for j in jobs.list_jobs()) and jobs.list_jobs(), timeout=45)

    assert {j.id for j in done} == set(ids)
    assert all(j.state == jobs.SUCCEEDED for j in done), [(j.id, j.state, j.reason) for j in done]
    assert sorted(fake_runs(jobs_home)) == sorted(ids)  # each started once
    assert {j.device for j in done} <= {"cpu:0", "cpu:1", "cpu:2"}
    for moment in [j.started_at + 0.01 for j in done]:  # never more than 3 at once
        assert sum(j.started_at <= moment < j.ended_at for j in done) <= 3
    assert all(j.test_metrics == {"test/accuracy": 0.9} and Path(j.bundle_path).exists() for j in done)
    assert all(j.mlflow_run_id == f"fake-run-{j.id}" for j in done)


def test_cancelling_a_running_job_stops_it_within_seconds(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec("fake epoch_seconds=0.5", epochs=200), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    running = wait_until(lambda: (j := jobs.get_job(job.id)).epoch and j)
    assert running.state == jobs.RUNNING and "epoch 1/200" in running.progress_text

    asked = time.monotonic()
    flagged = jobs.cancel_job(job.id)
    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=10)
    latency = time.monotonic() - asked

    assert flagged.cancel_requested
    assert ended.state == jobs.CANCELLED and ended.reason == "Cancelled on request."
    assert latency < 5, latency
    wait_until(lambda: not worker_alive(ended.pid, ended.pid_create_time), timeout=5)


def test_cancel_flag_alone_stops_the_worker(jobs_home: Path) -> None:
    """Without SIGTERM (e.g. the worker is on another machine): the hook reads the flag from the store."""
    job = jobs.submit_job(fake_spec("fake epoch_seconds=0.5", epochs=200), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    wait_until(lambda: jobs.get_job(job.id).epoch)

    asked = time.monotonic()
    store.request_cancel(job.id)
    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=10)

    assert ended.state == jobs.CANCELLED and time.monotonic() - asked < 3


def test_a_worker_that_ignores_cancel_is_killed_after_the_grace_period(jobs_home: Path) -> None:
    job = jobs.submit_job(
        fake_spec("fake stubborn=1 norun=1 epoch_seconds=1", epochs=100), start_scheduler=False
    )
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER, cancel_grace=1.0)
    running = wait_until(lambda: (j := jobs.get_job(job.id)).epoch and j)

    jobs.cancel_job(job.id)
    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=10)

    assert ended.state == jobs.CANCELLED and "was killed" in ended.reason
    wait_until(lambda: not worker_alive(running.pid, running.pid_create_time), timeout=5)


def test_a_killed_worker_is_reconciled_as_failed(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec("fake norun=1 epoch_seconds=1", epochs=100), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    running = wait_until(lambda: (j := jobs.get_job(job.id)).epoch and j)

    os.killpg(running.pid, signal.SIGKILL)
    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=10)

    assert ended.state == jobs.FAILED
    assert "stopped unexpectedly" in ended.reason and str(ended.log_path) in ended.reason


def test_on_start_the_scheduler_fails_jobs_whose_worker_is_gone(jobs_home: Path) -> None:
    """As after a machine restart: the store says running, the recorded process no longer exists."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(gone.pid).create_time()
    gone.wait()
    orphan = jobs.submit_job(fake_spec(), start_scheduler=False)
    store.claim_job(orphan.id, "cpu:0")
    store.set_worker(orphan.id, gone.pid, created)
    reused = jobs.submit_job(fake_spec(), start_scheduler=False)  # its pid now belongs to another process
    store.claim_job(reused.id, "cpu:1")
    store.set_worker(reused.id, os.getpid(), 12345.0)
    waiting = jobs.submit_job(fake_spec(), start_scheduler=False)

    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)

    for job_id in (orphan.id, reused.id):
        failed = wait_until(lambda job_id=job_id: not (j := jobs.get_job(job_id)).is_active and j)
        assert failed.state == jobs.FAILED and "stopped unexpectedly" in failed.reason
    assert wait_until(lambda: (j := jobs.get_job(waiting.id)).state == jobs.SUCCEEDED and j)


@pytest.mark.parametrize(
    ("crash", "reason"),
    [
        ("oom", "The GPU ran out of memory: lower the batch size or the image size."),
        ("memory", "The machine ran out of memory"),
        ("bug", "The training process crashed: ZeroDivisionError: division by zero (full log: "),
        ("exit", "The worker process stopped unexpectedly"),
    ],
)
def test_crashes_end_the_job_failed_with_a_plain_reason(jobs_home: Path, crash: str, reason: str) -> None:
    job = jobs.submit_job(fake_spec(f"fake norun=1 crash={crash}", epochs=1), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)

    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j)

    assert ended.state == jobs.FAILED and ended.reason.startswith(reason), ended.reason
    if crash == "bug":
        assert "ZeroDivisionError" in ended.log_path.read_text()  # the traceback is in the log


def test_a_gpu_job_on_a_machine_without_gpu_fails_with_a_reason(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(device="cuda"), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)

    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j)

    assert ended.state == jobs.FAILED and "has no GPU" in ended.reason


STARTER = textwrap.dedent(
    """
    import time
    from studio.jobs import ensure_scheduler, submit_job
    from tests.jobs.jobhelpers import FAKE_WORKER, fake_spec
    job = submit_job(fake_spec("fake epoch_seconds=0.5", epochs=4), start_scheduler=False)
    ensure_scheduler(worker_cmd=FAKE_WORKER)
    print(job.id, flush=True)
    time.sleep(120)
    """
)


def test_jobs_outlive_the_process_that_started_the_scheduler(jobs_home: Path) -> None:
    """Stands in for the Streamlit server: its whole session is killed while the job runs."""
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    job_id = starter.stdout.readline().strip()
    running = wait_until(lambda: (j := jobs.get_job(job_id)).epoch and j)
    daemon = scheduler_pid()

    os.killpg(starter.pid, signal.SIGKILL)
    starter.wait(timeout=10)

    assert daemon is not None and psutil.pid_exists(daemon)
    ended = wait_until(lambda: not (j := jobs.get_job(job_id)).is_active and j)
    assert ended.state == jobs.SUCCEEDED and ended.pid == running.pid
    assert jobs.scheduler_running()


def test_stopping_the_scheduler_leaves_running_jobs_alone(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec("fake epoch_seconds=0.4", epochs=4), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    wait_until(lambda: jobs.get_job(job.id).epoch)

    assert jobs.stop_scheduler()

    assert not jobs.scheduler_running()
    assert wait_until(lambda: (j := jobs.get_job(job.id)).state == jobs.SUCCEEDED and j)


def test_only_one_scheduler_runs_and_an_idle_one_exits(jobs_home: Path) -> None:
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER, idle_exit=1.0)
    wait_until(lambda: scheduler_pid() is not None, timeout=30)  # a loaded machine starts Python slowly
    first = scheduler_pid()
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER, idle_exit=1.0)
    assert first is not None and scheduler_pid() == first

    wait_until(lambda: not jobs.scheduler_running(), timeout=10)

    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    assert wait_until(lambda: scheduler_pid() not in (None, first), timeout=30)
    assert wait_until(lambda: jobs.get_job(job.id).state == jobs.SUCCEEDED)


def test_a_worker_started_by_hand_claims_the_job_itself(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    by_hand = [part.replace("{job_id}", job.id) for part in FAKE_WORKER]

    first = subprocess.run(by_hand, env=child_env(), capture_output=True, text=True, timeout=60)
    again = subprocess.run(by_hand, env=child_env(), capture_output=True, text=True, timeout=60)
    unknown = subprocess.run(
        [sys.executable, "-m", "studio.cli.worker", "job-nope"], capture_output=True, text=True
    )

    done = jobs.get_job(job.id)
    assert first.returncode == 0 and done.state == jobs.SUCCEEDED and done.device.startswith("direct:")
    assert again.returncode == 1 and fake_runs(jobs_home) == [job.id]  # an ended job is not run again
    assert unknown.returncode == 1 and "There is no job 'job-nope'" in unknown.stderr
