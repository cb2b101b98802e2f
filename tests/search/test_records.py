"""The search's record and the small words around it (no training): budgets, extending, cancelling an
ended search, and `jobs` listing a search beside the jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.errors import JobError, SpecError
from studio.search import control, records
from tests.search.helpers import tiny_dataset, tiny_spec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("10min", 600), ("1h30m", 5400), ("3", 180), ("1.5h", 5400)],
)
def test_budgets_read_like_a_clock(text: str, seconds: float) -> None:
    assert control.parse_budget(text) == seconds


@pytest.mark.parametrize(("text", "says"), [("soon", "is not a time"), ("5s", "too short")])
def test_a_wrong_budget_is_one_plain_sentence(text: str, says: str) -> None:
    with pytest.raises(SpecError, match=says):
        control.parse_budget(text)


def test_a_search_needs_a_budget_or_trials_and_a_score_that_fits(studio_home: Path, tmp_path: Path) -> None:
    spec = tiny_spec(tiny_dataset(tmp_path))
    with pytest.raises(SpecError, match="time budget or a number of trials"):
        control.start_search(spec, start_driver=False)
    with pytest.raises(SpecError, match="does not fit classification"):
        control.start_search(spec, max_trials=3, metric="val/r2", start_driver=False)


def test_more_time_reopens_an_ended_search_without_its_trial_cap(studio_home: Path, tmp_path: Path) -> None:
    search = control.start_search(tiny_spec(tiny_dataset(tmp_path)), max_trials=3, start_driver=False)
    assert search.is_active and search.metric == "val/accuracy" and search.direction == "max"
    records.update(search.id, state=records.FINISHED, used_seconds=40.0, reason="All 3 trials have run.")
    with pytest.raises(JobError, match="has already ended"):
        records.request_cancel(search.id)
    with pytest.raises(SpecError, match="give it more time"):
        control.resume_search(search.id)
    again = records.reopen(search.id, more_seconds=600, more_trials=None)
    assert (
        again.is_active and again.budget_seconds == 640 and again.max_trials is None and again.reason is None
    )
    assert "10 min left" in again.budget_text


def test_jobs_list_shows_searches(studio_home: Path, tmp_path: Path, capsys) -> None:
    from studio.cli.main import main

    search = control.start_search(tiny_spec(tiny_dataset(tmp_path)), budget_seconds=300, start_driver=False)
    assert main(["jobs", "list"]) == 0
    out = capsys.readouterr().out
    assert search.id in out and "0 trials · 5 min budget" in out
    assert main(["jobs", "show", search.id]) == 0
    assert "0 trials:" in capsys.readouterr().out
