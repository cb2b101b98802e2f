"""The budget: when it is used up the search starts no new trial and stops the one still training
within about an epoch (it counts as pruned, not failed), and the search ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.search.helpers import tiny_dataset, tiny_spec

EPOCH_WAIT = 0.5  # STUDIO_TEST_SLOW_EPOCHS: each epoch lasts at least this long


@pytest.mark.slow  # about 35 s: a 15-second budget, then the stop
def test_a_search_stops_at_its_budget(search_home: Path, tmp_path: Path, monkeypatch) -> None:
    from studio import jobs
    from studio.search import control, records
    from studio.search.study import load_study

    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", str(EPOCH_WAIT))
    spec = tiny_spec(tiny_dataset(tmp_path), epochs=500, early_stopping={"enabled": False})
    search = control.start_search(spec, budget_seconds=15)
    done = control.wait_for_search(search.id, timeout=180)
    assert done.state == records.FINISHED and done.reason == "The time budget is used up."
    trials = control.trials(search.id)
    last = trials[-1]
    assert last.state == jobs.CANCELLED and last.trial_state == "pruned"
    assert "time budget ran out" in (last.note or "")
    # asked to stop when the budget ran out; stopped within an epoch (plus the worker's poll and exit)
    assert last.cancel_requested_at is not None
    stopping = last.ended_at - last.cancel_requested_at
    print(f"budget 15 s: used {done.used_seconds:.1f} s, the last trial took {stopping:.2f} s to stop")
    assert stopping <= EPOCH_WAIT + 2.5
    # the time counted: the budget, the driver's half-second pass, and the trial stopping
    assert 15 <= done.used_seconds <= 15 + 0.5 + stopping + 1.0
    states = {t.number: t.state.name for t in load_study(search.id).trials}
    assert states[last.trial_number] == "PRUNED" and "RUNNING" not in states.values()
    assert not any(job.is_active for job in trials)
