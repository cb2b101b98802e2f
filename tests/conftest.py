"""Shared fixtures: every test that touches the studio's files gets its own STUDIO_HOME and MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mlflow_store import new_store


@pytest.fixture
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty studio home under ``tmp_path`` (``STUDIO_HOME``), with MLflow beside it."""
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp_path}/mlruns"))
    return home
