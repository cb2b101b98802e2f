"""When the local executor keeps a warm worker waiting: one per free slot, none while the slot's last warm
worker is on its way back from a job, and none with ``STUDIO_STANDBY_WORKER=0`` (``serve --no-standby``).
Worker processes are recorded, not started."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.jobs.executors import local


class Started:
    """Stands in for ``subprocess.Popen``: records the command, and the process never ends."""

    commands: list[list[str]] = []

    def __init__(self, cmd: list[str], **_: object) -> None:
        Started.commands.append(cmd)
        self.pid = 10_000 + len(Started.commands)

    def poll(self) -> None:
        return None


@pytest.fixture
def started(jobs_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    Started.commands = []
    monkeypatch.setattr(local.subprocess, "Popen", Started)
    monkeypatch.delenv(local.STANDBY_ENV, raising=False)
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
