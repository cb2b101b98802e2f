"""No zombie process is left by the studio's daemons, read from the process table: after a cancelled run,
after a search (its driver is a child of whoever started it: here this test, in the studio the Streamlit
server) and after the scheduler's idle exit. The fast test uses the stand-in worker and a search cancelled
at once; the slow one trains for real with the warm worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from tests.jobs.jobhelpers import FAKE_WORKER, fake_spec
from tests.processes import processes_under
from tests.search.helpers import tiny_dataset, tiny_spec

pytestmark = pytest.mark.python_m_workers  # (which process reaps which, as a studio's are)


def zombies(home: Path) -> list[str]:
    """Zombies whose parent is this test or a process of the studio in ``home``."""
    parents = {os.getpid(), *(p.pid for p in processes_under(home))}
    found = []
    for proc in psutil.process_iter(["ppid", "status", "name"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE and proc.info["ppid"] in parents:
            found.append(f"{proc.pid} ({proc.info['name']}, parent {proc.info['ppid']})")
    return found


def settle_without_zombies(home: Path, seconds: float = 3.0) -> None:
    """Zombies are reaped within a scheduler pass (0.5 s); fail when one stays for ``seconds``."""
    deadline = time.monotonic() + seconds
    while (found := zombies(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not found, found


def wait_for_idle_exit(seconds: float = 30.0) -> None:
    from studio.jobs import scheduler_running

    deadline = time.monotonic() + seconds
    while scheduler_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not scheduler_running()


def test_no_zombie_after_a_cancelled_search_a_cancelled_run_and_an_idle_exit(
    jobs_home: Path, tmp_path: Path, monkeypatch
) -> None:
    from studio import jobs
    from studio.jobs import ensure_scheduler, stop_scheduler
    from studio.search import control, records

    monkeypatch.setenv("STUDIO_STANDBY_WORKER", "0")  # (no torch import here: the slow test has it)
    search = control.start_search(tiny_spec(tiny_dataset(tmp_path)), budget_seconds=600)
    control.cancel_search(search.id)
    assert control.wait_for_search(search.id, timeout=60).state == records.CANCELLED
    deadline = time.monotonic() + 10
    while control.driver_running(search.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    settle_without_zombies(jobs_home)
    assert stop_scheduler(timeout=10)  # (the driver may have started one with the real worker)

    ensure_scheduler(worker_cmd=FAKE_WORKER, idle_exit=1.0)
    job = jobs.submit_job(fake_spec("fake epoch_seconds=0.2", epochs=100))
    deadline = time.monotonic() + 30
    while (jobs.get_job(job.id).epoch or 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    jobs.cancel_job(job.id)
    assert jobs.wait_for_job(job.id, timeout=30).state == jobs.CANCELLED
    settle_without_zombies(jobs_home)
    wait_for_idle_exit()
    settle_without_zombies(jobs_home)


@pytest.mark.slow  # 80-120 s on 2 busy cores: real trials through the warm worker
def test_no_zombie_after_a_cancelled_run_a_search_and_an_idle_exit(
    jobs_home: Path, tmp_path: Path, monkeypatch
) -> None:
    from studio import jobs
    from studio.jobs import ensure_scheduler, scheduler_running, stop_scheduler
    from studio.search import control, records

    dataset = tiny_dataset(tmp_path)

    # A cancelled run (a real worker, slowed so that the cancel lands mid-run).
    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", "0.3")
    job = jobs.submit_job(tiny_spec(dataset, epochs=200, early_stopping={"enabled": False}))
    deadline = time.monotonic() + 120
    while (jobs.get_job(job.id).epoch or 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    jobs.cancel_job(job.id)
    assert jobs.wait_for_job(job.id, timeout=60).state == jobs.CANCELLED
    settle_without_zombies(jobs_home)
    monkeypatch.delenv("STUDIO_TEST_SLOW_EPOCHS")

    # A search: its driver is started from this process and exits at the end of the search.
    search = control.start_search(tiny_spec(dataset, epochs=2), max_trials=2)
    assert control.wait_for_search(search.id, timeout=180).state == records.FINISHED
    deadline = time.monotonic() + 10
    while control.driver_running(search.id) and time.monotonic() < deadline:
        time.sleep(0.1)
    settle_without_zombies(jobs_home)

    # The scheduler's idle exit (its standby worker goes with it).
    assert stop_scheduler(timeout=10)
    ensure_scheduler(idle_exit=1.0)
    assert scheduler_running()
    wait_for_idle_exit()
    settle_without_zombies(jobs_home)
