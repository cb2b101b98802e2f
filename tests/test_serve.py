"""``python -m studio serve``: port checks, clean shutdown, and jobs that outlive the web server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from studio.server import serve as serve_mod
from tests.mlflow_store import new_store
from tests.ports import free_port

pytestmark = pytest.mark.python_m_workers  # (the studio's processes as they are: command lines, parents)

REPO_ROOT = Path(__file__).resolve().parents[1]

# A stand-in app: the serve tests are about processes, not pages (the browser test drives the real app).
STAND_IN_APP = """
import streamlit as st
from studio.jobs import list_jobs

st.title("Jobs")
for job in list_jobs():
    st.write(f"{job.name}: {job.state}")
"""

# serve() with the stand-in app, and without the MLflow UI unless an argument after the app says "mlflow"
# ("no-standby": serve --no-standby).
SERVE_DRIVER = (
    "import sys; from pathlib import Path; from studio.server.serve import serve; "
    "sys.exit(serve('127.0.0.1', int(sys.argv[1]), int(sys.argv[2]), app=Path(sys.argv[3]), "
    "mlflow_ui='mlflow' in sys.argv[4:], standby='no-standby' not in sys.argv[4:]))"
)
JOB_RUNNER_MARKERS = ("huey_consumer", "mlflow.server.jobs")  # MLflow's GenAI job runner and its consumers


def wait_until(condition, timeout: float, poll: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(poll)


class ServeProcess:
    """``serve`` running in a subprocess (its own session), its output in a file."""

    def __init__(self, tmp_path: Path, port: int, app: Path, mlflow_ui: bool = False, standby: bool = True) -> None:
        self.port = port
        self.mlflow_port = free_port()
        self.output = tmp_path / f"serve-{port}.out"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-c", SERVE_DRIVER, str(port), str(self.mlflow_port), str(app)]
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                cmd + (["mlflow"] if mlflow_ui else []) + ([] if standby else ["no-standby"]),
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.descendants: list[psutil.Process] = []

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until(
            lambda: "is ready" in self.text() or self.proc.poll() is not None, timeout, what="studio ready"
        )
        assert "is ready" in self.text(), self.text()
        self.descendants = psutil.Process(self.proc.pid).children(recursive=True)

    def streamlit(self) -> psutil.Process:
        return next(p for p in self.descendants if "streamlit" in " ".join(p.cmdline()))

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for proc in self.descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def served(studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Start serve processes with a stand-in app; whatever they left is killed afterwards."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    app = tmp_path / "app.py"
    app.write_text(STAND_IN_APP)
    started: list[ServeProcess] = []

    def start(mlflow_ui: bool = False, standby: bool = True) -> ServeProcess:
        process = ServeProcess(tmp_path, free_port(), app, mlflow_ui, standby)
        started.append(process)
        return process

    yield start
    from studio.jobs import stop_scheduler

    for process in started:
        process.kill_all()
    stop_scheduler(timeout=5)
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if proc.pid != os.getpid() and cwd and Path(cwd).is_relative_to(tmp_path):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


# --------------------------------------------------------------------------- ports
def test_port_in_use_sees_a_listening_socket_and_a_free_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert serve_mod.port_in_use("127.0.0.1", taken)
        assert serve_mod.port_in_use("0.0.0.0", taken)  # a wildcard server would collide too
    assert not serve_mod.port_in_use("127.0.0.1", free_port())


def test_check_ports_names_the_option_to_change() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        free = free_port()
        with pytest.raises(serve_mod.PortInUse, match=rf"^port {taken} is in use: pass --port \d+"):
            serve_mod.check_ports("127.0.0.1", taken, free)
        with pytest.raises(serve_mod.PortInUse, match=rf"^port {taken} is in use: pass --mlflow-port \d+"):
            serve_mod.check_ports("127.0.0.1", free, taken)
    with pytest.raises(serve_mod.PortInUse, match="cannot share port"):
        serve_mod.check_ports("127.0.0.1", free, free)
    serve_mod.check_ports("127.0.0.1", free_port(), free_port())


def test_urls_use_loopback_for_a_wildcard_host() -> None:
    assert serve_mod.url_for("0.0.0.0", 8501) == "http://127.0.0.1:8501"
    assert serve_mod.url_for("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert serve_mod.url_for("::1", 5000) == "http://[::1]:5000"


def test_serve_command_with_a_taken_port_says_so_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = dict(
        os.environ, STUDIO_HOME=str(home), MLFLOW_TRACKING_URI=new_store(f"{tmp_path}/mlruns")
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "studio",
                "serve",
                "--port",
                str(taken),
                "--mlflow-port",
                str(free_port()),
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"port {taken} is in use: pass --port "), result.stderr
    assert not home.exists()  # no sample, no scheduler, no server


# --------------------------------------------------------------------------- shutdown
STUBBORN_SERVER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(helper.pid, flush=True)
time.sleep(600)
"""


def test_stop_children_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    child = serve_mod.Child(
        "stubborn",
        [sys.executable, "-c", STUBBORN_SERVER],
        tmp_path / "stubborn.log",
        dict(os.environ),
        tmp_path,
    )
    child.start()
    helper_pid = int(wait_until(lambda: child.log_path.read_text().strip(), 20, what="helper started"))
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)  # its own group, not ours
    started = time.monotonic()
    serve_mod.stop_children([child], grace=1.0)
    assert time.monotonic() - started < 8
    assert child.proc.returncode == -signal.SIGKILL
    wait_until(
        lambda: not psutil.pid_exists(helper_pid) or psutil.Process(helper_pid).status() == "zombie",
        5,
        what="helper gone",
    )


def studio_processes(home: Path) -> list[psutil.Process]:
    """Every live process of the studio in ``home``: all of them carry ``STUDIO_HOME`` (serve gives it to
    the servers, the scheduler and the workers), whichever process group or session they lead."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("STUDIO_HOME") == str(home):
                found.append(proc)
    return found


def stop_and_check_nothing_is_left(process: ServeProcess, home: Path, sig: int) -> None:
    """Send ``sig`` to serve: it exits 0, and within ``STOP_SECONDS`` no process of the studio is left."""
    os.kill(process.proc.pid, sig)
    started = time.monotonic()
    assert process.proc.wait(timeout=30) == 0, process.text()
    left = studio_processes(home)
    while left and time.monotonic() - started < serve_mod.STOP_SECONDS:
        time.sleep(0.1)
        left = studio_processes(home)
    assert not left, [p.cmdline() for p in left]
    assert time.monotonic() - started < serve_mod.STOP_SECONDS + 1


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "closed terminal"]
)
def test_serve_adds_the_sample_once_and_stops_everything_on_a_signal(
    served, studio_home: Path, sig: int
) -> None:
    from studio.data import list_datasets
    from studio.jobs import delete_dataset, scheduler_running

    # The warm worker's stop is the same for every signal: one of them checks it (each warm worker
    # imports torch, Lightning and MLflow for nothing here).
    with_standby = sig == signal.SIGTERM
    process = served(standby=with_standby)
    process.wait_ready()
    assert [d.name for d in list_datasets()] == ["wine"]
    assert scheduler_running()
    children = process.descendants
    assert any("streamlit" in " ".join(p.cmdline()) for p in children)
    assert serve_mod.answers_http(f"http://127.0.0.1:{process.port}/_stcore/health")
    if with_standby:
        wait_until(  # the scheduler's warm worker too (it outlives serve only while a job runs)
            lambda: any("--standby" in p.cmdline() for p in studio_processes(studio_home)), 30, what="standby"
        )

    stop_and_check_nothing_is_left(process, studio_home, sig)
    assert not scheduler_running()  # nothing was queued, so the scheduler was stopped too
    assert "Stopped." in process.text()
    assert not serve_mod.port_in_use("127.0.0.1", process.port)

    # The sample is offered on the first start only: a user who deleted it does not get it back.
    delete_dataset(list_datasets()[0].id)
    again = served(standby=False)
    again.wait_ready()
    assert list_datasets() == []
    os.kill(again.proc.pid, signal.SIGTERM)
    assert again.proc.wait(timeout=30) == 0


def test_the_mlflow_ui_is_one_process_without_a_job_runner_and_goes_with_serve(served, studio_home: Path) -> None:
    """MLflow 3's ``mlflow ui`` starts a launcher, the web server, a GenAI job runner and a Huey consumer
    per queue (10 processes, ~2.4 GB); the studio's MLflow UI is the web server alone."""
    process = served(mlflow_ui=True, standby=False)  # (the warm worker's own stop: the signal test)
    process.wait_ready()
    wait_until(lambda: "MLflow UI ready" in process.text(), 120, what="MLflow UI ready")
    assert serve_mod.answers_http(f"http://127.0.0.1:{process.mlflow_port}/health")
    time.sleep(2)  # MLflow starts its job runner after the web server (when it does)
    processes = studio_processes(studio_home)
    commands = [" ".join(p.cmdline()) for p in processes]
    assert not [c for c in commands if any(marker in c for marker in JOB_RUNNER_MARKERS)], commands
    modules = [p.cmdline()[p.cmdline().index("-m") + 1] for p in processes if "-m" in p.cmdline()]
    mlflow_ui = [m for m in modules if m in ("uvicorn", "mlflow", "studio.server.mlflow_ui")]
    assert mlflow_ui == ["studio.server.mlflow_ui"], commands  # MLflow's launcher runs the web server itself
    server = next(p for p in processes if "studio.server.mlflow_ui" in p.cmdline())
    assert server.children() == []
    log = (studio_home / "logs" / "mlflow-ui.log").read_text()
    assert f"Started server process [{server.pid}]" in log, log[-2000:]  # uvicorn runs in that process
    # serve, Streamlit, the MLflow UI and the scheduler: nothing else.
    assert len(commands) == 4, commands

    stop_and_check_nothing_is_left(process, studio_home, signal.SIGTERM)


def test_no_standby_keeps_no_warm_worker(served, studio_home: Path) -> None:
    from studio.jobs import scheduler_running

    process = served(standby=False)
    process.wait_ready()
    assert scheduler_running()
    time.sleep(3)  # the scheduler has made several passes: with a standby worker it would be starting
    commands = [" ".join(p.cmdline()) for p in studio_processes(studio_home)]
    assert not [c for c in commands if "studio.jobs.worker" in c], commands
    stop_and_check_nothing_is_left(process, studio_home, signal.SIGTERM)


# --------------------------------------------------------------------------- jobs outlive the server
def _tiny_table(folder: Path, rows: int = 300) -> Path:
    import random

    rng = random.Random(0)
    lines = ["a,b,y"] + [
        f"{a:.3f},{b:.3f},{int(a + b > 1)}" for a, b in ((rng.random(), rng.random()) for _ in range(rows))
    ]
    path = folder / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_job_finishes_after_the_web_server_is_killed_and_shows_up_after_a_restart(
    served, studio_home: Path, tmp_path: Path
) -> None:
    from streamlit.testing.v1 import AppTest

    from studio import jobs
    from studio.core.spec import RunSpec
    from studio.data import add_csv

    process = served()
    process.wait_ready()
    dataset = add_csv(_tiny_table(tmp_path))
    spec = RunSpec.from_dict(
        {
            "name": "outlives-the-server",
            "task": "classification",
            "data": {"dataset_id": dataset.id, "target": "y"},
            "training": {"epochs": 60, "batch_size": 16},
            "early_stopping": {"enabled": False},
        }
    )
    job = jobs.submit_job(spec)
    running = wait_until(
        lambda: ((j := jobs.get_job(job.id)).epoch or 0) >= 1 and j, 120, what="job training"
    )
    assert running.state == jobs.RUNNING

    process.streamlit().kill()  # the web server dies mid-run (SIGKILL: no clean-up of any kind)
    assert process.proc.wait(timeout=30) == 1  # serve notices, says so and stops
    assert "stopped unexpectedly" in process.text()
    assert jobs.get_job(job.id).is_active, "the job should still be training after the server died"

    done = jobs.wait_for_job(job.id, timeout=180)
    assert done.state == jobs.SUCCEEDED, done.reason
    assert done.epoch == 60 and Path(done.bundle_path).is_file()

    restarted = served(standby=False)  # (it only shows the page: no warm worker to import torch for nothing)
    restarted.wait_ready()
    page = AppTest.from_string(STAND_IN_APP, default_timeout=30).run()
    assert not page.exception
    assert "outlives-the-server: succeeded" in [m.value for m in page.markdown]
    os.kill(restarted.proc.pid, signal.SIGINT)
    assert restarted.proc.wait(timeout=30) == 0
