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
    """A fresh, empty studio home under ``tmp_path`` (``STUDIO_HOME``), with MLflow beside it. The
    test waits for this process's fork server to be ready: a job started before it is (a worker, a
    scheduler, a search's driver) would import the training stack itself, which under a loaded start of
    a parallel run cost more than the wait (six processes of four tests in one clean-clone rehearsal)."""
    from tests.forkserver import wait_for_fork_server

    wait_for_fork_server()
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp_path}/mlruns"))
    return home


# --------------------------------------------------------------------------- AppTest: one scan of the packages
@pytest.fixture(scope="session", autouse=True)
def _streamlit_component_scan_once() -> None:
    """Every ``AppTest`` run by a new ``AppTest`` object scans every installed distribution's metadata
    for Streamlit "v2" components (``streamlit.components.v2.manifest_scanner.scan_component_manifests``,
    Streamlit 1.67): ~760 packages here, 1.7 CPU-s each time, against ~0.1 s for the page itself. The
    installed packages do not change while the tests run, so this process scans once and every later
    ``AppTest`` registers what that scan found (the studio ships no such component; the list is the same).
    A real ``streamlit run`` scans once at its start, as before."""
    import functools

    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # (another Streamlit: nothing to spare)
        return
    if not hasattr(manifest_scanner.scan_component_manifests, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.cache(manifest_scanner.scan_component_manifests)


# --------------------------------------------------------------------------- workers: forks, not imports
@pytest.fixture(scope="session", autouse=True)
def _worker_fork_server() -> None:
    """The studio's workers that the tests start are forks of this test process's fork server
    (``tests.forkserver.STUDIO``): set for the whole session, so module-scoped fixtures get it too."""
    from studio.core.forkserver import FORK_SERVER_ENV
    from tests.forkserver import STUDIO

    os.environ[FORK_SERVER_ENV] = STUDIO.socket()


@pytest.fixture(autouse=True)
def _workers_of_this_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """New interpreters for the workers of tests marked ``python_m_workers`` (such as the browser test of
    the whole path, which starts ``serve`` as ``make run`` does); a new fork server when the last one has
    ended (a test stopped it)."""
    from studio.core.forkserver import FORK_SERVER_ENV
    from tests.forkserver import STUDIO

    if request.node.get_closest_marker("python_m_workers"):
        monkeypatch.delenv(FORK_SERVER_ENV, raising=False)
    elif STUDIO.socket() != os.environ.get(FORK_SERVER_ENV):
        os.environ[FORK_SERVER_ENV] = STUDIO.socket()


# --------------------------------------------------------------------------- how many processes, which file where
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one test process more than this machine has cores (``--maxprocesses`` caps it). A test
    process spends part of its time waiting for processes it started (servers, workers, a scheduler's
    pass), and the extra one fills those gaps: on 2 cores the fast suite took 6 min 18 s with 3 processes
    against 6 min 55 s with 2, for the same CPU time. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # (pytest-xdist's own hook reads it)
    return len(os.sched_getaffinity(0)) + 1
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
