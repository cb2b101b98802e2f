"""A real local Ray head the Ray tests share (``ray start --head --port 0 --num-cpus 2
--include-dashboard=true --disable-usage-stats``, on loopback, stopped once the next test needs none:
:class:`Shared`) and a real MLflow server the Ray jobs track into.

The head runs with ``--block`` in its own session, started from a folder of its own and without the
studio's ``STUDIO_HOME``: teardown stops exactly its process group (never ``ray stop``, which would stop
every Ray on the machine). Each test's studio runs the ``ray`` executor against it; the "node" keeps its
files in a separate ``STUDIO_NODE_HOME``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.mlflow_server.mlflow_server import free_port, start_mlflow_server


class RayHead:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        # Ray's socket paths must stay short (AF_UNIX): its temp folder lives right under /tmp.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rayh", dir="/tmp"))
        env = {k: v for k, v in os.environ.items() if k not in ("STUDIO_HOME", "MLFLOW_TRACKING_URI")}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        bin_dir = Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        cmd = [
            str(bin_dir / "ray") if (bin_dir / "ray").exists() else "ray",
            "start",
            "--head",
            "--port",
            "0",
            "--num-cpus",
            "2",
            "--num-gpus",
            "0",
            "--include-dashboard=true",
            "--disable-usage-stats",
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(self.dashboard_port),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--ray-client-server-port",
            str(free_port()),
            "--temp-dir",
            str(self.temp_dir),
            "--block",
        ]
        self.log = folder / "ray-head.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.address}/api/cluster_status", timeout=2) as response:
                    usage = json.load(response)["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
                if usage.get("CPU", [0, 0])[1] >= 2:
                    return
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Ray head did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def processes(self) -> list[psutil.Process]:
        try:
            return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        procs = self.processes()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        gone, alive = psutil.wait_procs(procs, timeout=5)
        for proc in alive:  # some of Ray's processes start sessions of their own
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        import shutil

        shutil.rmtree(self.temp_dir, ignore_errors=True)


class Shared:
    """A server the Ray tests share: started by the first test that asks for it, stopped when the next test
    to run asks for none of these servers (or at the end). In a parallel run the Ray files go to one test process
    as one unit (``tests/xdist_order.py``), which then runs other files; an idle Ray head keeps using CPU
    all that time (its raylet, GCS and dashboard agent). A later test that asks starts a new one."""

    def __init__(self, start: Callable[[pytest.TempPathFactory], Any]) -> None:
        self.start, self.server = start, None

    def get(self, tmp_path_factory: pytest.TempPathFactory) -> Any:
        if self.server is None:
            self.server = self.start(tmp_path_factory)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()


def _start_ray_head(tmp_path_factory: pytest.TempPathFactory) -> RayHead:
    head = RayHead(tmp_path_factory.mktemp("ray-head"))
    head.wait_ready()
    return head


RAY_HEAD = Shared(_start_ray_head)
CLUSTER_MLFLOW = Shared(lambda factory: start_mlflow_server(factory.mktemp("cluster-mlflow")))
SHARED_FIXTURES = {"ray_head": RAY_HEAD, "cluster_mlflow": CLUSTER_MLFLOW}


@pytest.fixture
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> RayHead:
    pytest.importorskip("ray", reason="the Ray tests need `pip install -r requirements-cluster.txt`")
    return RAY_HEAD.get(tmp_path_factory)


@pytest.fixture
def cluster_mlflow(tmp_path_factory: pytest.TempPathFactory):
    return CLUSTER_MLFLOW.get(tmp_path_factory)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After a test's own teardown: stop the shared servers when the next test asks for none of them (one
    Ray test that only needs the MLflow server keeps the head for the Ray tests after it)."""
    result = yield
    if nextitem is None or not SHARED_FIXTURES.keys() & set(nextitem.fixturenames):
        for shared in SHARED_FIXTURES.values():
            shared.stop()
    return result


def pytest_sessionfinish() -> None:
    for shared in SHARED_FIXTURES.values():
        shared.stop()


@pytest.fixture
def on_ray(
    ray_head: RayHead, cluster_mlflow, studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """This test's studio runs its jobs on the Ray head, tracks into the MLflow server, and its "node"
    keeps its files in ``tmp_path/node`` (never the studio's ``STUDIO_HOME``). Afterwards the scheduler
    stops and every Ray job this test left running is stopped."""
    from studio import tracking
    from studio.jobs import stop_scheduler

    monkeypatch.setenv("MLFLOW_TRACKING_URI", cluster_mlflow.url)
    monkeypatch.setenv("STUDIO_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    monkeypatch.setenv("STUDIO_RAY_PYTHON", sys.executable)
    monkeypatch.setenv("STUDIO_NODE_HOME", str(tmp_path / "node"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_CPU_SLOTS", raising=False)
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    tracking._client_for.cache_clear()
    studio_home.mkdir(parents=True, exist_ok=True)
    yield ray_head
    stop_scheduler(timeout=10)
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head.address)
    for job in client.list_jobs():
        if job.status in (JobStatus.PENDING, JobStatus.RUNNING):
            with contextlib.suppress(Exception):
                client.stop_job(job.submission_id)
    tracking._client_for.cache_clear()
