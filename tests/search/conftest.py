"""Fixtures for the search tests: a private STUDIO_HOME with CPU slots only, and no process left behind
(the scheduler runs in STUDIO_HOME, workers in their job folders, a search's driver in its folder)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest


def processes_under(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if proc.pid != os.getpid() and cwd and Path(cwd).is_relative_to(folder):
            found.append(proc)
    return found


@pytest.fixture
def search_home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    from studio.jobs import stop_scheduler

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    monkeypatch.delenv("STUDIO_SEARCH_STORAGE", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    for proc in processes_under(studio_home / "searches"):  # drivers first: they would queue more trials
        proc.kill()
    stop_scheduler(timeout=5)
    for proc in processes_under(studio_home):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    psutil.wait_procs(processes_under(studio_home), timeout=5)


def wait_until(condition, timeout: float = 60.0, poll: float = 0.1):
    """Poll until ``condition()`` is truthy and return its value; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)
