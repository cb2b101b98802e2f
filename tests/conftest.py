"""Shared fixtures: every test that touches the studio's files gets its own STUDIO_HOME and MLflow store."""

from __future__ import annotations

import json
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


# --------------------------------------------------------------------------- the order of the test files
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201  (xdist's hook)
    """``--dist loadfile`` hands out the longest files first, the Ray files as one (``tests/xdist_order.py``)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.xdist_order import LongestFilesFirst

    return LongestFilesFirst(config, log)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-file-seconds",
        action="store_true",
        help="write each test file's seconds (setup, call and teardown of its tests) to tests/file_seconds.json",
    )


_file_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    _file_seconds[path] = _file_seconds.get(path, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("--store-file-seconds") and not hasattr(config, "workerinput") and _file_seconds:
        from tests.xdist_order import SECONDS_FILE, known_seconds

        seconds = known_seconds() | {path: round(s, 1) for path, s in _file_seconds.items()}
        SECONDS_FILE.write_text(json.dumps(dict(sorted(seconds.items())), indent=1) + "\n")
