"""The processes a test started in a studio home, found by their working folder (the scheduler runs in
``STUDIO_HOME``, workers in their job folders, a search's driver in its folder), and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil


def processes_under(folder: Path) -> list[psutil.Process]:
    """Every process but this one whose working folder is ``folder`` or under it."""
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if proc.pid != os.getpid() and cwd and Path(cwd).is_relative_to(folder):
            found.append(proc)
    return found


def stop_everything_under(home: Path) -> None:
    """Stop every process of the studio home ``home`` (``STUDIO_HOME`` must name it): its searches'
    drivers first (they would queue more trials), then its scheduler, then whatever still runs there
    (workers, with their process groups)."""
    from studio.jobs import stop_scheduler

    for proc in processes_under(home / "searches"):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    stop_scheduler(timeout=5)
    for proc in processes_under(home):  # (one may exit meanwhile: a warm worker whose scheduler stopped)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    psutil.wait_procs(processes_under(home), timeout=5)
