"""A real ``mlflow server`` on loopback for tests: SQLite backend, proxied artifacts (``--serve-artifacts``),
optionally the ``basic-auth`` app. Used by the shared-server tests and the Ray tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.mlflow_store import new_store
from tests.ports import free_port

ADMIN_USER = "admin"
ADMIN_PASSWORD = "studio-test-admin-1"


@dataclass
class MlflowServer:
    url: str
    folder: Path
    proc: subprocess.Popen
    auth: bool

    @property
    def artifacts(self) -> Path:
        """Where the server keeps the artifacts it proxies (``--artifacts-destination``)."""
        return self.folder / "artifacts"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow_server(
    folder: Path, *, auth: bool = False, backend: str | None = None, timeout: float = 120.0
) -> MlflowServer:
    """``mlflow server`` with a SQLite store in ``folder`` (or the database ``backend``) and
    ``--serve-artifacts`` (its own session, its output in ``folder/server.log``); with ``auth`` the
    basic-auth app, admin ``ADMIN_USER`` / ``ADMIN_PASSWORD``. The SQLite store starts as a copy of a
    new, already migrated one (``tests.mlflow_store``: MLflow's migrations take 6-8 s), its ``Default``
    experiment's artifacts where the server would put them (``mlflow-artifacts:/0``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if backend is None:
        new_store(folder, default_artifacts="mlflow-artifacts:/0")  # folder/mlflow.db
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend or f"sqlite:///{folder}/mlflow.db",
        "--serve-artifacts",
        "--artifacts-destination",
        (folder / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # No GenAI job runner (a Huey consumer of ~240 MB per queue): the studio never uses it.
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    if auth:
        ini = folder / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{folder}/basic_auth.db\n"
            f"admin_username = {ADMIN_USER}\n"
            f"admin_password = {ADMIN_PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # As the README advises: without it the server hashes the password again for every request
            # (tens of ms each; the studio's pages and jobs make hundreds), ~30 CPU-s in one test here.
            "auth_cache_ttl_seconds = 300\n"
        )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = os.urandom(16).hex()  # the auth app's CSRF key
        cmd += ["--app-name", "basic-auth"]
    with open(folder / "server.log", "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", folder, proc, auth)
    deadline = time.monotonic() + timeout
    while not _answers(server.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
        time.sleep(0.25)
    return server
