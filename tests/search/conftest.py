"""Fixtures for the search tests: a private STUDIO_HOME with CPU slots only, and no process left behind
(the scheduler runs in STUDIO_HOME, workers in their job folders, a search's driver in its folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import stop_everything_under


@pytest.fixture
def search_home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    monkeypatch.delenv("STUDIO_SEARCH_STORAGE", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    stop_everything_under(studio_home)


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
