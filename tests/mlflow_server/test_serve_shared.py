"""``serve --mlflow-uri``: no local MLflow UI, the app and the scheduler track on the shared server, the
console and the pages link to that server's UI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tests.mlflow_server.mlflow_server import MlflowServer, free_port
from tests.test_serve import STAND_IN_APP, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = (
    "import sys; from pathlib import Path; from studio.server.serve import serve; "
    "sys.exit(serve('127.0.0.1', int(sys.argv[1]), 5000, app=Path(sys.argv[2]), mlflow_uri=sys.argv[3]))"
)

pytestmark = pytest.mark.python_m_workers  # (serve's children, as a studio's are)


def _serve(tmp_path: Path, uri: str) -> tuple[subprocess.Popen, Path, int]:
    app = tmp_path / "app.py"
    app.write_text(STAND_IN_APP)
    port = free_port()
    output = tmp_path / f"serve-{port}.out"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(port), str(app), uri],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, output, port


def test_serve_with_mlflow_uri_starts_no_mlflow_ui_and_links_to_the_server(
    mlflow_server: MlflowServer, studio_home: Path, tmp_path: Path
) -> None:
    from studio.jobs import stop_scheduler

    proc, output, _ = _serve(tmp_path, mlflow_server.url + "/")
    try:
        wait_until(lambda: "is ready" in output.read_text() or proc.poll() is not None, 90, what="ready")
        text = output.read_text()
        assert "is ready" in text, text
        assert (
            f"Runs are tracked on the shared MLflow server; its UI: {mlflow_server.url}/#/experiments" in text
        )
        assert "MLflow UI ready" not in text and "not started" not in text
        children = psutil.Process(proc.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in children]
        assert not any("mlflow ui" in c or "mlflow.server" in c or " mlflow " in c for c in commands), (
            commands
        )
        app_env = next(p for p in children if "streamlit" in " ".join(p.cmdline())).environ()
        assert app_env["STUDIO_MLFLOW_UI_URL"] == mlflow_server.url  # the pages' links
        assert app_env["STUDIO_MLFLOW_UI_SHARED"] == "1"  # kept as they are (see the test below)
        assert app_env["MLFLOW_TRACKING_URI"] == mlflow_server.url  # the app's queries
        proc.terminate()
        assert proc.wait(timeout=30) == 0, output.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_scheduler(timeout=5)


@pytest.mark.parametrize(
    ("uri", "said"),
    [("127.0.0.1:1", "--mlflow-uri needs a full address"), ("http://127.0.0.1:{dead}", "does not answer")],
)
def test_serve_with_an_mlflow_uri_that_does_not_answer_says_so_and_starts_nothing(
    uri: str, said: str, studio_home: Path, tmp_path: Path
) -> None:
    from studio.jobs import scheduler_running

    proc, output, port = _serve(tmp_path, uri.format(dead=free_port()))
    assert proc.wait(timeout=60) == 2
    lines = output.read_text().strip().splitlines()
    assert len(lines) == 1 and said in lines[0], lines
    assert not scheduler_running()


def test_links_to_a_shared_server_keep_its_host_while_a_local_ui_follows_the_browser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from studio.server.serve import SHARED_MLFLOW_ENV, for_browser, server_env

    monkeypatch.delenv(SHARED_MLFLOW_ENV, raising=False)
    assert for_browser("http://127.0.0.1:5000", "studio.lan:8501") == "http://studio.lan:5000"
    env = server_env("http://mlflow.team:5000", shared=True)
    assert env["STUDIO_MLFLOW_UI_URL"] == "http://mlflow.team:5000" and env[SHARED_MLFLOW_ENV] == "1"
    monkeypatch.setenv(SHARED_MLFLOW_ENV, "1")
    assert for_browser("http://mlflow.team:5000", "studio.lan:8501") == "http://mlflow.team:5000"
    assert SHARED_MLFLOW_ENV not in server_env("http://127.0.0.1:5000")


def test_mlflow_link_names_the_address_browsers_use(
    mlflow_server: MlflowServer, studio_home: Path, tmp_path: Path
) -> None:
    """Inside Docker the studio reaches the server as http://mlflow:5000; people's browsers do not."""
    from studio.server.serve import serve

    said: list[str] = []
    stop = threading.Event()
    stop.set()  # start, announce, stop at once (the stand-in app is not waited for)
    app = tmp_path / "app.py"
    app.write_text(STAND_IN_APP)
    code = serve(
        "127.0.0.1",
        free_port(),
        app=app,
        mlflow_uri=mlflow_server.url,
        mlflow_link="http://team-host:5000/",
        stop=stop,
        say=said.append,
    )
    assert code == 0
    assert (
        "Runs are tracked on the shared MLflow server; its UI: http://team-host:5000/#/experiments"
        in " ".join(said)
    ), said
