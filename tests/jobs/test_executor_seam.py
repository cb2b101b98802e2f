"""The scheduler runs jobs only through the Executor protocol: a test-only executor registered from
here (threads in this process instead of worker processes) is picked by ``STUDIO_EXECUTOR`` and
drives jobs through every ending the scheduler knows (finished, cancelled and killed, died), with no
change anywhere else. A cluster executor plugs in the same way."""

from __future__ import annotations

import threading
import time
from itertools import count
from pathlib import Path

import pytest

from studio.jobs import executors, store
from studio.jobs.executors import Ended, Executor, Slot
from studio.jobs.scheduler import Scheduler
from studio.jobs.store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job
from tests.jobs.jobhelpers import fake_spec

_worker_ids = count(900_000)


class ThreadExecutor:
    """Runs each job in a thread: "ok" jobs finish, "die" jobs end without settling their job,
    "stubborn" ones ignore a polite cancel."""

    name = "threads"

    def __init__(self) -> None:
        self.threads: dict[str, tuple[int, threading.Thread]] = {}
        self.stop_asked: set[str] = set()
        self.killed: set[str] = set()
        self.submitted: list[tuple[str, str]] = []
        self.shut_down = False

    def slots(self) -> list[Slot]:
        return [Slot("cpu:0", ""), Slot("cpu:1", "")]

    def submit(self, job: Job, slot: Slot) -> None:
        worker = next(_worker_ids)
        store.set_worker(job.id, worker, time.time())
        thread = threading.Thread(target=self._run, args=(job, worker), daemon=True)
        self.threads[job.id] = (worker, thread)
        self.submitted.append((job.id, slot.name))
        thread.start()

    def _run(self, job: Job, worker: int) -> None:
        kind = job.spec.name
        for _ in range(100):
            if job.id in self.killed or (job.id in self.stop_asked and kind != "stubborn"):
                break
            if kind in ("ok", "die") and _ > 3:
                break
            time.sleep(0.02)
        if job.id in self.killed or kind == "die":
            return  # gone without a word: the scheduler must settle the job
        state = CANCELLED if job.id in self.stop_asked else SUCCEEDED
        store.finish_job(job.id, state, reason="stopped" if state == CANCELLED else None, only_pid=worker)

    def poll(self) -> list[Ended]:
        ended = [Ended(job_id, worker, 0) for job_id, (worker, t) in self.threads.items() if not t.is_alive()]
        for item in ended:
            del self.threads[item.job_id]
        return ended

    def started(self, job_id: str) -> bool:
        return job_id in self.threads

    def alive(self, job: Job) -> bool:
        return job.id in self.threads and self.threads[job.id][1].is_alive()

    def cancel(self, job: Job, *, force: bool = False) -> bool:
        (self.killed if force else self.stop_asked).add(job.id)
        return job.id in self.threads

    def logs(self, job: Job) -> Path:
        return store.log_path(job.id)

    def keep_warm(self, busy: set[str]) -> None:
        pass

    def settling(self, running: set[str]) -> set[str]:
        return set()

    def running(self) -> bool:
        return any(t.is_alive() for _, t in self.threads.values())

    def shutdown(self) -> None:
        self.shut_down = True


def run_until(scheduler: Scheduler, done, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [(j.name, j.state) for j in store.list_jobs()]
        scheduler.tick()
        time.sleep(0.02)


def test_a_registered_executor_runs_every_kind_of_job_through_the_protocol(
    studio_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[ThreadExecutor] = []
    monkeypatch.setitem(executors.EXECUTORS, "threads", lambda: made.append(ThreadExecutor()) or made[-1])
    monkeypatch.setenv(executors.EXECUTOR_ENV, "threads")
    scheduler = Scheduler(cancel_grace=0.2)
    (executor,) = made
    assert isinstance(executor, Executor) and scheduler.executor is executor

    ok, died = store.insert_job(fake_spec("ok")), store.insert_job(fake_spec("die"))
    run_until(
        scheduler, lambda: store.get_job(ok.id).state == SUCCEEDED and store.get_job(died.id).state == FAILED
    )
    assert "stopped unexpectedly" in store.get_job(died.id).reason
    assert sorted(slot for _, slot in executor.submitted) == ["cpu:0", "cpu:1"]  # both slots used

    polite, stubborn = store.insert_job(fake_spec("slow")), store.insert_job(fake_spec("stubborn"))
    run_until(
        scheduler, lambda: store.get_job(polite.id).state == RUNNING == store.get_job(stubborn.id).state
    )
    for job in (polite, stubborn):
        executor.cancel(
            store.request_cancel(job.id)
        )  # what jobs.cancel_job does with the configured executor
    run_until(
        scheduler, lambda: store.get_job(polite.id).state == CANCELLED == store.get_job(stubborn.id).state
    )
    assert store.get_job(polite.id).reason == "stopped"
    assert stubborn.id in executor.killed and "was killed" in store.get_job(stubborn.id).reason
    assert not scheduler.has_work()
    scheduler.retire_standby()
    assert executor.shut_down


def test_a_job_waits_while_every_slot_is_busy(studio_home, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = ThreadExecutor()
    scheduler = Scheduler(executor=executor)
    jobs = [store.insert_job(fake_spec("slow")) for _ in range(3)]
    run_until(scheduler, lambda: sum(store.get_job(j.id).state == RUNNING for j in jobs) == 2)
    scheduler.tick()
    assert [store.get_job(j.id).state for j in jobs].count(QUEUED) == 1
    for job in jobs:
        executor.cancel(store.request_cancel(job.id))
    run_until(scheduler, lambda: all(store.get_job(j.id).state == CANCELLED for j in jobs))


def test_an_unknown_executor_is_named_with_the_choices(studio_home, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.core.errors import JobError

    monkeypatch.setenv(executors.EXECUTOR_ENV, "nowhere")
    with pytest.raises(JobError, match="no executor called 'nowhere'.*local"):
        Scheduler()


def test_the_local_executor_is_the_default_and_meets_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.jobs.executors.local import LocalExecutor

    monkeypatch.delenv(executors.EXECUTOR_ENV, raising=False)
    executor = executors.make_executor()
    assert isinstance(executor, LocalExecutor) and isinstance(executor, Executor)
