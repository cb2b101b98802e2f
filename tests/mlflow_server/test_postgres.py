"""The production form of the shared server: ``mlflow server`` on a real PostgreSQL (Debian's postgresql
package, a throw-away cluster in a temporary folder, loopback only). Skipped where PostgreSQL's server
programs are not installed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.mlflow_server.mlflow_server import free_port, start_mlflow_server

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url():
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="needs psycopg from requirements-cluster.txt")
    folder = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # reachable by the postgres user
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    subprocess.run(
        _as_postgres([str(pg / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        _as_postgres(
            [
                str(pg / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "listen_addresses=127.0.0.1",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            assert server.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.3)
        subprocess.run(
            [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"], check=True
        )
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
        if server.poll() is None:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_job_trains_into_an_mlflow_server_on_postgresql(
    postgres_url: str, on_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio import jobs, tracking
    from tests.pages.test_runs_page import run_in_process, spec, tiny_dataset

    server = start_mlflow_server(tmp_path / "mlflow", backend=postgres_url)
    try:
        on_server(server)
        tracking._client_for.cache_clear()
        done = run_in_process(spec(tiny_dataset(tmp_path), "on postgres"))
        assert done.state == jobs.SUCCEEDED, done.reason
        run = tracking.client().get_run(done.mlflow_run_id)
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert len(tracking.metric_history(done.mlflow_run_id, ["val/loss"])["val/loss"]) == 2
        assert tracking.download_bundle(done.mlflow_run_id, str(tmp_path / "fetched")).endswith("model.zip")
        assert not (tmp_path / "mlflow" / "mlflow.db").exists()  # the runs are in PostgreSQL
    finally:
        server.stop()
        tracking._client_for.cache_clear()
