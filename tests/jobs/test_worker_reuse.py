"""The warm worker's loop: after each job it says ``ready JOB_ID`` on its pipe and reads the next id,
unless the job did not end well, no one listens, or it has run its share. No training here: the job
is a stand-in that ends the stored job the way the test says."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from studio.jobs import store, worker
from studio.jobs.executors.local import READY_FD_ENV
from tests.jobs.jobhelpers import fake_spec


@pytest.fixture
def loop(jobs_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``worker.standby`` on the given job ids; the jobs end as ``outcomes`` says. Returns what the
    worker ran and what it wrote on its ready pipe."""

    def run(outcomes: dict[str, str], *, listening: bool = True) -> tuple[list[str], list[str]]:
        ran: list[str] = []

        def wrap_hooks(job: object, hooks: object) -> object:
            return hooks

        def fake_run_job(job_id: str, wrap_hooks: object = None) -> int:
            assert wrap_hooks is given  # every job gets the hooks the worker's process adds
            ran.append(job_id)
            assert Path.cwd() == store.job_dir(job_id)  # from the job's folder
            assert store.claim_job(job_id, "cpu:0")
            store.finish_job(job_id, outcomes[job_id])
            return 0 if outcomes[job_id] == store.SUCCEEDED else 1

        read_end, write_end = os.pipe()
        monkeypatch.setattr(worker, "warm_up", lambda: None)
        monkeypatch.setattr(worker, "run_job", fake_run_job)
        monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{job_id}\n" for job_id in outcomes)))
        if listening:
            monkeypatch.setenv(READY_FD_ENV, str(write_end))
        else:
            monkeypatch.delenv(READY_FD_ENV, raising=False)
        before = Path.cwd()
        given = wrap_hooks
        try:
            worker.standby(given)
        finally:
            os.close(write_end)
            os.chdir(before)
        with os.fdopen(read_end) as said:
            return ran, said.read().split("\n")[:-1] if listening else []

    return run


def _jobs(n: int) -> list[str]:
    return [store.insert_job(fake_spec(f"job {i}")).id for i in range(n)]


def test_it_runs_jobs_one_after_another_while_they_end_well(loop) -> None:
    a, b, c = _jobs(3)
    ran, said = loop({a: store.SUCCEEDED, b: store.CANCELLED, c: store.SUCCEEDED})
    assert ran == [a, b, c]
    assert said == [f"ready {a}", f"ready {b}", f"ready {c}"]


def test_a_failed_job_ends_the_worker(loop) -> None:
    a, b, c = _jobs(3)
    ran, said = loop({a: store.SUCCEEDED, b: store.FAILED, c: store.SUCCEEDED})
    assert ran == [a, b]  # c is left for a fresh process
    assert said == [f"ready {a}"]


def test_without_a_listener_it_runs_one_job(loop) -> None:
    a, b = _jobs(2)
    ran, _ = loop({a: store.SUCCEEDED, b: store.SUCCEEDED}, listening=False)
    assert ran == [a]


def test_it_stops_after_its_share_of_jobs(loop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "MAX_JOBS_PER_WORKER", 2)
    a, b, c = _jobs(3)
    ran, said = loop({a: store.SUCCEEDED, b: store.SUCCEEDED, c: store.SUCCEEDED})
    assert ran == [a, b] and said == [f"ready {a}"]
