"""A search as a whole: cancelled (its trials stop, no new one starts, its parent run is KILLED), and
resumed after its driver, the scheduler and the trial's worker were all killed (as a machine restart
would): the trial continues from its saved epoch in the same job and run, and the search finishes."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.processes import processes_under
from tests.search.conftest import wait_until
from tests.search.helpers import tiny_dataset, tiny_spec


@pytest.fixture
def slow_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", "0.5")
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")


def test_cancelling_a_search_stops_it_whole(search_home: Path, tmp_path: Path, slow_epochs) -> None:
    from studio import jobs, tracking
    from studio.search import control, records
    from studio.search.study import load_study

    spec = tiny_spec(tiny_dataset(tmp_path), epochs=200, early_stopping={"enabled": False})
    search = control.start_search(spec, budget_seconds=600)
    first = wait_until(
        lambda: (t := control.trials(search.id)) and (t[0].epoch or 0) >= 1 and t[0], timeout=120
    )
    assert first.state == jobs.RUNNING
    control.cancel_search(search.id)
    ended = control.wait_for_search(search.id, timeout=60)
    assert ended.state == records.CANCELLED
    trials = control.trials(search.id)
    assert trials and not any(job.is_active for job in trials)
    assert len(trials) == 1  # nothing new after the cancel
    assert trials[0].state == jobs.CANCELLED and "whole search was cancelled" in (trials[0].note or "")
    assert tracking.client().get_run(ended.parent_run_id).info.status == "KILLED"
    assert all(t.state.name != "RUNNING" for t in load_study(search.id).trials)
    assert not control.driver_running(search.id)


def test_a_search_goes_on_after_its_driver_scheduler_and_worker_were_killed(
    search_home: Path, tmp_path: Path, slow_epochs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio import jobs
    from studio.search import control, records

    # validation shares of 45% leave room for one block of validation rows: each trial is its own run, not
    # five cross-validation folds (what is killed and resumed here is the trial's run)
    spec = tiny_spec(tiny_dataset(tmp_path), epochs=8, early_stopping={"enabled": False})
    spec = spec.with_changes(**{"data.val_fraction": 0.45})
    search = control.start_search(spec, max_trials=2)
    wait_until(lambda: (t := control.trials(search.id)) and t[0].checkpoint and (t[0].epoch or 0) >= 3, 120)

    for _ in range(3):  # driver, scheduler, workers: as if the machine stopped (again for any process
        for proc in processes_under(search_home):  # one of them was starting right then)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        psutil.wait_procs(processes_under(search_home), timeout=10)
    # a killed process lets go of the driver's lock once it has exited (slow on a loaded machine)
    try:
        wait_until(lambda: not control.driver_running(search.id), timeout=60)
    except AssertionError:
        raise AssertionError(f"the driver's lock is still held: {_holders(search_home)}") from None
    assert jobs.get_job(control.trials(search.id)[0].id).state == jobs.RUNNING  # nobody noticed yet

    # every process that had the slow epochs is gone: the resumed search's trials train at full speed
    monkeypatch.delenv("STUDIO_TEST_SLOW_EPOCHS")
    control.resume_search(search.id)  # what opening it on the page or `jobs resume` does
    done = control.wait_for_search(search.id, timeout=240)
    assert done.state == records.FINISHED, done.reason
    trials = control.trials(search.id)
    assert [job.trial_number for job in trials] == [0, 1]
    first = trials[0]
    assert first.state == jobs.SUCCEEDED and first.trial_state == "complete"
    assert "Resumed at epoch" in (first.note or "")
    assert done.best_job_id in {job.id for job in trials}


def _holders(folder: Path) -> list[str]:
    """Every process with a file under ``folder`` open (what keeps a lock)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if any(Path(f.path).is_relative_to(folder) for f in proc.open_files()):
                found.append(
                    f"{proc.info['pid']} {proc.info['status']} {' '.join(proc.info['cmdline'] or [])}"
                )
    return found
