"""Shared fixtures: every test that touches the studio's files gets its own STUDIO_HOME and MLflow store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.mlflow_store import new_store

# One torch thread per process, here and in every process a test starts (they inherit the variable): the
# suite runs one process per core (pytest-xdist), and torch's default, one thread per core in each, makes
# the processes fight over the cores; the tiny models the tests train are faster on one thread anyway.
# Measured on the 2-core machine: the CLI and table-explanation tests used 60 CPU seconds instead of 103.
# A value set outside (OMP_NUM_THREADS=2 make test-fast) is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # a plugin imported it before this file: the variable came too late for it
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty studio home under ``tmp_path`` (``STUDIO_HOME``), with MLflow beside it."""
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp_path}/mlruns"))
    return home
