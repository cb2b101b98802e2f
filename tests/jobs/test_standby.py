"""When the local executor keeps a warm worker waiting: one per free slot, none while the slot's last warm
worker is on its way back from a job, and none with ``STUDIO_STANDBY_WORKER=0`` (``serve --no-standby``);
and which worker a job gets when none waits. Worker processes are recorded, not started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from studio import jobs
from studio.core.forkserver import FORK_SERVER_ENV
from studio.jobs.executors import local
from studio.jobs.executors.base import Slot
from tests.jobs.jobhelpers import fake_spec


class Stdin:
    def __init__(self) -> None:
        self.written = ""

    def write(self, data: bytes) -> None:
        self.written += data.decode()

    def flush(self) -> None:
        pass


class Started:
    """Stands in for ``subprocess.Popen``: records the command, and the process never ends."""

    commands: list[list[str]] = []

    def __init__(self, cmd: list[str], **_: object) -> None:
        Started.commands.append(cmd)
        self.pid = os.getpid()  # a live process, as the executor reads its start time
        self.stdin = Stdin()
        self.terminated = False

    def poll(self) -> None:
        return None

    def terminate(self) -> None:
        self.terminated = True


@pytest.fixture
def started(jobs_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    Started.commands = []
    monkeypatch.setattr(local.subprocess, "Popen", Started)
    monkeypatch.delenv(local.STANDBY_ENV, raising=False)
    monkeypatch.delenv(FORK_SERVER_ENV, raising=False)  # (workers are started with Popen, not forked)
    return Started.commands


def test_one_warm_worker_waits_on_each_free_slot(started) -> None:
    executor = local.LocalExecutor(gpus=[], cpu_slots=2)
    executor.keep_warm(busy={"cpu:1"})
    executor.keep_warm(busy={"cpu:1"})  # (it still runs: no second one)
    assert len(started) == 1 and "--standby" in started[0]
    assert set(executor.standby) == {"cpu:0"}


def test_no_second_warm_worker_while_the_last_one_comes_back_from_its_job(started) -> None:
    executor = local.LocalExecutor(gpus=[], cpu_slots=1)
    executor._reusable["job-1"] = "cpu:0"  # its job has ended; it has not said "ready" yet
    executor.keep_warm(busy=set())
    assert started == []
    executor._reusable.clear()  # it exited instead: the slot gets a fresh one
    executor.keep_warm(busy=set())
    assert len(started) == 1


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_no_warm_worker_when_turned_off(started, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(local.STANDBY_ENV, value)
    executor = local.LocalExecutor(gpus=[], cpu_slots=1)
    executor.keep_warm(busy=set())
    assert started == [] and not executor.warm


def test_a_job_with_no_warm_worker_waiting_gets_a_new_one_that_stays_for_the_next(started) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    executor = local.LocalExecutor(gpus=[], cpu_slots=1)
    executor.launch(job, executor.slots()[0])
    assert len(started) == 1 and "--standby" in started[0]
    worker = executor.children[job.id]
    assert worker.stdin.written == f"{job.id}\n"  # the job at once, after its imports
    assert executor._reusable == {job.id: "cpu:0"}  # once it ends well, it waits for the slot's next job
    assert executor.standby == {}  # it is the job's worker now, not a waiting one


@pytest.mark.parametrize("turned_off", [False, True], ids=["two slots", "STUDIO_STANDBY_WORKER=0"])
def test_a_job_on_two_slots_or_with_warm_workers_off_gets_a_worker_of_its_own(
    started, monkeypatch: pytest.MonkeyPatch, turned_off: bool
) -> None:
    if turned_off:
        monkeypatch.setenv(local.STANDBY_ENV, "0")
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    executor = local.LocalExecutor(gpus=[], cpu_slots=2)
    slot = executor.slots()[0] if turned_off else Slot("cpu:0,cpu:1", "")
    executor.launch(job, slot)
    assert started == [[part.replace("{job_id}", job.id) for part in local.DEFAULT_WORKER_CMD]]
    assert executor._reusable == {} and job.id in executor.children


def _ended_on_a_warm_worker(executor: local.LocalExecutor) -> jobs.Job:
    """A job that ran on a new warm worker and has just ended well (in the store); the worker has not yet
    said whether it takes the next job."""
    from studio.jobs import store

    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    assert store.claim_job(job.id, "cpu:0")
    executor.launch(job, executor.slots()[0])
    assert store.finish_job(job.id, jobs.SUCCEEDED)
    return job


def test_the_next_job_waits_for_the_warm_worker_finishing_the_last_one(
    started, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in the scheduler's log: the next job of a queue went to a new worker (imports again) because
    it was handed out before the last job's worker said it was ready, which it did half a second later."""
    from studio.jobs.scheduler import Scheduler

    executor = local.LocalExecutor(gpus=[], cpu_slots=1)
    scheduler = Scheduler(executor=executor)
    first = _ended_on_a_warm_worker(executor)
    worker = executor.children[first.id]
    second = jobs.submit_job(fake_spec(), start_scheduler=False)

    scheduler.tick()  # the worker has not said "ready" yet: the slot is still its
    assert len(started) == 1 and jobs.get_job(second.id).state == jobs.QUEUED
    monkeypatch.setattr(executor, "_said_ready", lambda pid, job_id: job_id == first.id)
    scheduler.tick()  # it has: it takes the next job
    assert len(started) == 1 and jobs.get_job(second.id).state == jobs.RUNNING
    assert worker.stdin.written == f"{first.id}\n{second.id}\n"


def test_a_warm_worker_that_never_says_ready_is_let_go(started, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "SETTLE_SECONDS", 0.2)
    executor = local.LocalExecutor(gpus=[], cpu_slots=1)
    first = _ended_on_a_warm_worker(executor)
    worker = executor.children[first.id]
    assert executor.settling(running=set()) == {"cpu:0"}
    assert executor.settling(running={first.id}) == set()  # (its job runs: busy as a running job)
    time.sleep(0.3)
    assert executor.settling(running=set()) == set() and worker.terminated
    assert first.id not in executor._reusable  # when it exits, poll reaps it as any worker
