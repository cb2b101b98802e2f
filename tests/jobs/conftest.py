"""Fixtures for the job tests: a private STUDIO_HOME, CPU slots only, and no process left behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest


def _processes_under(folder: Path) -> list[psutil.Process]:
    """Processes started for a test: the scheduler runs in STUDIO_HOME, each worker in its job folder."""
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if proc.pid != os.getpid() and cwd and Path(cwd).is_relative_to(folder):
            found.append(proc)
    return found


@pytest.fixture
def jobs_home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    """``studio_home`` with CPU slots only (same behaviour on GPU machines) and a cleanup that stops the
    scheduler and kills every process that ran inside this home."""
    from studio.jobs import stop_scheduler

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    stop_scheduler(timeout=5)
    for proc in _processes_under(studio_home):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    psutil.wait_procs(_processes_under(studio_home), timeout=5)
