"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and a real ``studio serve``.

Never ``playwright install``: the browser is the system ``chromium`` (``make install-browser``).

``full_studio`` is ``serve`` as ``make run`` starts it: the MLflow UI, and a scheduler and warm worker
that are new interpreters (the test of the whole path uses it, marked ``python_m_workers``). The tests of
single pages use ``studio``: ``serve --no-mlflow-ui`` (only the pages' links to the MLflow UI are gone),
whose scheduler and workers are forks of this test process's fork server (``tests/forkserver.py``), so
they do not import the training stack again; the pages, the app and ``serve`` itself are the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.forkserver import wait_for_fork_server
from tests.mlflow_store import new_store
from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Studio:
    """``python -m studio serve`` in a subprocess on free loopback ports, its output in a file."""

    def __init__(self, workdir: Path, env: dict[str, str], *extra_args: str) -> None:
        self.port, self.mlflow_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = workdir / "serve.out"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "studio",
                    "serve",
                    "--port",
                    str(self.port),
                    "--mlflow-port",
                    str(self.mlflow_port),
                    *extra_args,
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children: list[psutil.Process] = []

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, line: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not say {line!r} within {timeout} s:\n{self.text()}")
            time.sleep(0.2)
        self.children = psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 40) -> int:
        """Send ``sig`` (Ctrl-C by default) and return serve's exit code."""
        self.children = self.children or psutil.Process(self.proc.pid).children(recursive=True)
        os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.children += psutil.Process(self.proc.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for child in self.children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def studio_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private studio home and MLflow store, CPU only, for serve and for this test process."""
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(f"{tmp_path}/mlruns"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    wait_for_fork_server()  # (when this test's workers are to be forks)
    return dict(os.environ, PYTHONUNBUFFERED="1")


@pytest.fixture
def full_studio(tmp_path: Path, studio_env: dict[str, str]) -> Iterator[Studio]:
    """A running studio as ``make run`` starts it, MLflow UI included; whatever is left of it (and of its
    jobs) is killed after the test."""
    running = Studio(tmp_path, studio_env)
    yield running
    stop_studio(running, tmp_path)


@pytest.fixture
def studio(tmp_path: Path, studio_env: dict[str, str]) -> Iterator[Studio]:
    """A running studio without the MLflow UI (``serve --no-mlflow-ui``), for a test of pages."""
    running = Studio(tmp_path, studio_env, "--no-mlflow-ui")
    yield running
    stop_studio(running, tmp_path)


@pytest.fixture
def idle_studio(tmp_path: Path, studio_env: dict[str, str]) -> Iterator[Studio]:
    """A running studio for a test that trains nothing: no warm worker importing torch for nothing
    (``serve --no-standby``), and no MLflow UI."""
    running = Studio(tmp_path, studio_env, "--no-standby", "--no-mlflow-ui")
    yield running
    stop_studio(running, tmp_path)


def stop_studio(running: Studio, tmp_path: Path) -> None:
    """Kill whatever is left of a studio started under ``tmp_path`` (and of its jobs)."""
    if running.proc.poll() is None:
        running.kill()
    from studio.jobs import stop_scheduler

    stop_scheduler(timeout=5)
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if proc.pid != os.getpid() and cwd and Path(cwd).is_relative_to(tmp_path):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


@pytest.fixture
def browser():
    """Headless Debian Chromium; the test is skipped with the reason when it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium with `make install-browser`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for stale in SCREENSHOTS.glob("FAILED-*.png"):
        stale.unlink()
    return SCREENSHOTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(browser, screenshots: Path, request: pytest.FixtureRequest):
    """A browser tab; when the test fails, what it showed is saved as ``FAILED-<test>.png``."""
    tab = browser.new_page(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    tab.set_default_timeout(60_000)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if not tab.is_closed():
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                tab.screenshot(path=str(screenshots / f"FAILED-{request.node.name}.png"), full_page=True)
        tab.close()
