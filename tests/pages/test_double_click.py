"""The window in which the Train page, shown with ``?job=`` of the job this session's press just made,
takes it for a double click's second click and opens that run page again (``studio.app.ui``); the whole
double click in a browser is checked by tests/e2e/test_train_form.py."""

from __future__ import annotations

import pytest

from studio.app import ui


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(ui.st, "session_state", {})
    monkeypatch.setattr(ui.time, "monotonic", lambda: now[0])
    return now


def test_a_second_click_soon_after_the_press_opens_the_run_again_once(clock):
    ui.remember_train_press("job-1")
    clock[0] += ui.DOUBLE_CLICK_SECONDS - 1
    assert ui.second_click_of_train("job-2") is None  # another job's address: not this press
    assert ui.second_click_of_train(None) is None
    assert ui.second_click_of_train("job-1") == "job-1"
    assert ui.second_click_of_train("job-1") is None  # once


def test_a_person_coming_back_later_stays_on_train(clock):
    ui.remember_train_press("job-1")
    clock[0] += ui.DOUBLE_CLICK_SECONDS + 1
    assert ui.second_click_of_train("job-1") is None


def test_the_window_starts_again_when_the_run_page_has_first_shown(clock):
    """A busy machine: the run page finished showing 4 s after the press; the second click's rerun of the
    Train page comes right after it, more than the window after the press."""
    ui.remember_train_press("job-1")
    clock[0] += 4
    ui.run_page_shown("job-2")  # another run's page moves nothing
    ui.run_page_shown("job-1")
    clock[0] += ui.DOUBLE_CLICK_SECONDS - 1
    assert ui.second_click_of_train("job-1") == "job-1"


def test_the_run_pages_later_refreshes_do_not_move_the_window(clock):
    ui.remember_train_press("job-1")
    ui.run_page_shown("job-1")
    clock[0] += ui.DOUBLE_CLICK_SECONDS - 1
    ui.run_page_shown("job-1")  # the live page showing it again
    clock[0] += 2
    assert ui.second_click_of_train("job-1") is None
