"""``python -m studio jobs …`` as a user runs it, against the same store as the pages (fake worker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio import jobs
from tests.jobs.jobhelpers import FAKE_WORKER, tiny_csv, wait_until


def studio(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", "jobs", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def fake_scheduler(jobs_home: Path) -> Path:
    """A scheduler that runs the fake worker; `jobs submit` finds it running and uses it."""
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    return jobs_home


def test_submit_list_show_and_wait(fake_scheduler: Path, tmp_path: Path) -> None:
    data = tiny_csv(tmp_path)

    submitted = studio(
        "submit", "--data", str(data), "--target", "y", "--epochs", "3", "--name", "fake epoch_seconds=0.05"
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.startswith("job-") and jobs.get_job(job_id).spec.training.epochs == 3

    waited = studio("wait", job_id, "--timeout", "30")
    assert waited.returncode == 0 and f"{job_id}: succeeded" in waited.stdout

    listed = studio("list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == ["ID", "STATE", "NAME", "PROGRESS", "CREATED"]
    assert job_id in listed.stdout and "succeeded" in listed.stdout

    shown = studio("show", job_id)
    assert shown.returncode == 0
    assert "state         succeeded" in shown.stdout
    assert f"mlflow run    fake-run-{job_id}" in shown.stdout
    assert "test metrics  test/accuracy=0.9" in shown.stdout

    as_json = json.loads(studio("show", job_id, "--json").stdout)
    assert as_json["state"] == "succeeded" and as_json["mlflow_run_id"] == f"fake-run-{job_id}"


def test_cancel_running_and_queued_jobs(fake_scheduler: Path, tmp_path: Path) -> None:
    data = tiny_csv(tmp_path)
    ids = [
        studio(
            "submit",
            "--data",
            str(data),
            "--target",
            "y",
            "--epochs",
            "200",
            "--name",
            "fake epoch_seconds=0.5",
        ).stdout.strip()
        for _ in range(2)
    ]
    running, queued = ids
    wait_until(lambda: jobs.get_job(running).epoch)
    assert jobs.get_job(queued).state == jobs.QUEUED  # one CPU slot

    removed = studio("cancel", queued)
    assert removed.returncode == 0 and f"{queued}: cancelled" in removed.stdout
    stopped = studio("cancel", running)
    assert stopped.returncode == 0 and f"{running}: cancelled - Cancelled on request." in stopped.stdout

    assert [jobs.get_job(i).state for i in ids] == [jobs.CANCELLED, jobs.CANCELLED]
    again = studio("cancel", running)
    assert again.returncode == 2 and "already ended (cancelled)" in again.stderr
    assert studio("delete", queued).returncode == 0
    assert queued not in studio("list").stdout


def test_failed_job_shows_its_reason_and_wait_exits_1(fake_scheduler: Path, tmp_path: Path) -> None:
    data = tiny_csv(tmp_path)
    job_id = studio(
        "submit", "--data", str(data), "--target", "y", "--epochs", "1", "--name", "fake norun=1 crash=oom"
    ).stdout.strip()

    waited = studio("wait", job_id, "--timeout", "30")
    shown = studio("show", job_id)

    assert waited.returncode == 1 and "failed - The GPU ran out of memory" in waited.stdout
    assert "reason        The GPU ran out of memory: lower the batch size" in shown.stdout


def test_user_errors_are_one_line_and_exit_2(jobs_home: Path) -> None:
    missing = studio("show", "job-20000101-000000")
    bad_state = studio("list", "--state", "paused")
    no_data = studio("submit", "--epochs", "2")

    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: There is no job 'job-20000101-000000'; `python -m studio jobs list` shows the jobs."
    )
    assert bad_state.returncode == 2 and "invalid choice: 'paused'" in bad_state.stderr
    assert no_data.returncode == 2 and no_data.stderr.startswith("error: ")
    assert studio("list").stdout.startswith("No jobs yet.")
