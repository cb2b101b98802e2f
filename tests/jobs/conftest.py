"""Fixtures for the job tests: a private STUDIO_HOME, CPU slots only, and no process left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import stop_everything_under


@pytest.fixture
def jobs_home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    """``studio_home`` with CPU slots only (same behaviour on GPU machines) and a cleanup that stops the
    scheduler and kills every process that ran inside this home."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    stop_everything_under(studio_home)
