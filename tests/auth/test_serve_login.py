"""What ``serve`` does for the login: Streamlit's command line (nothing calls out, XSRF stays on), the
addresses it prints, the start-up password, and the environment its servers get."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from studio.server import auth
from studio.server import serve as serve_mod
from tests.ports import free_port

pytestmark = pytest.mark.python_m_workers  # (every child's environment, as a studio's are)

REPO_ROOT = Path(__file__).resolve().parents[2]
Address = namedtuple("Address", "family address netmask broadcast ptp")  # what psutil.net_if_addrs lists


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_streamlit_gets_a_server_address_no_usage_statistics_and_keeps_xsrf(tmp_path: Path) -> None:
    command = serve_mod.streamlit_command(tmp_path / "app.py", "0.0.0.0", 8501, "192.168.1.20")
    assert command[1:5] == [
        "-m",
        "studio.server.serve",
        "streamlit",
        "run",
    ]  # the launcher without the IP lookup
    assert option(command, "--server.address") == "0.0.0.0"
    assert option(command, "--browser.serverAddress") == "192.168.1.20"
    assert option(command, "--browser.gatherUsageStats") == "false"
    assert option(command, "--server.headless") == "true"
    assert not any("Xsrf" in part or "enableCORS" in part for part in command)
    loopback = serve_mod.streamlit_command(tmp_path / "app.py", "127.0.0.1", 8501)
    assert option(loopback, "--browser.serverAddress") == "127.0.0.1"


def test_the_served_pages_watch_no_source_files_and_force_no_collection_after_each_run(tmp_path: Path) -> None:
    """The options as Streamlit's own ``run`` command reads them (an option it does not know, or a value
    of the wrong type, fails here as it would fail serve)."""
    from streamlit.web import cli

    command = serve_mod.streamlit_command(tmp_path / "app.py", "127.0.0.1", 8501)
    parsed = cli.main_run.make_context("run", command[command.index("run") + 1 :]).params
    options = {name.replace("_", "."): value for name, value in parsed.items() if value not in (None, ())}
    assert options["server.fileWatcherType"] == "none"
    assert options["runner.postScriptGC"] is False
    assert options["server.port"] == 8501 and parsed["target"] == str(tmp_path / "app.py")


def test_the_repository_config_keeps_xsrf_on_and_streamlit_on_this_computer() -> None:
    import tomllib

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False


def test_streamlit_never_asks_the_internet_for_this_machines_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit import net_util
    from streamlit.web.server import server_util

    calls = []
    monkeypatch.setattr(net_util, "_make_blocking_http_get", lambda url, timeout=5: calls.append(url))
    monkeypatch.setattr(net_util, "_external_ip", None)
    monkeypatch.setattr(net_util, "get_external_ip", net_util.get_external_ip)  # restored afterwards
    serve_mod.stop_external_ip_lookup()
    # A WebSocket from another site's page is judged by the machine's addresses; the external one is unknown.
    assert not server_util.is_url_from_allowed_origins("http://evil.example")
    assert calls == []


def test_the_streamlit_launcher_runs_streamlit() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "studio.server.serve", "streamlit", "version"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Streamlit, version" in result.stdout


def test_a_wildcard_address_is_shown_as_this_machines_real_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = serve_mod.reachable_hosts("0.0.0.0")
    interfaces = {
        a.address
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family == socket.AF_INET
    }
    assert set(shown) == {a for a in interfaces if not ipaddress.ip_address(a).is_loopback}
    assert serve_mod.reachable_hosts("192.168.7.7") == ["192.168.7.7"]

    fake = [
        Address(socket.AF_INET, "127.0.0.1", None, None, None),
        Address(socket.AF_INET, "192.168.1.20", None, None, None),
        Address(socket.AF_INET6, "fe80::1%eth0", None, None, None),
        Address(socket.AF_INET6, "2001:db8::5", None, None, None),
        Address(socket.AF_INET, "10.0.0.3", None, None, None),
    ]
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"eth0": fake})
    assert serve_mod.reachable_hosts("0.0.0.0") == ["192.168.1.20", "10.0.0.3"]
    assert serve_mod.reachable_hosts("::") == ["192.168.1.20", "2001:db8::5", "10.0.0.3"]
    addresses = serve_mod.Addresses(
        "http://127.0.0.1:8501", serve_mod.public_urls("0.0.0.0", 8501), None, "", login=True
    )
    assert addresses.ready_line() == (
        "Training Studio is ready: open http://192.168.1.20:8501 in your browser (or http://10.0.0.3:8501); "
        "on this computer: http://127.0.0.1:8501; log in with a studio user."
    )
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"lo": fake[:1]})
    assert serve_mod.public_urls("0.0.0.0", 8501) == ["http://127.0.0.1:8501"]  # no network at all


def test_the_mlflow_link_uses_the_host_the_browser_used() -> None:
    url = "http://192.168.1.20:5000"
    assert serve_mod.for_browser(url, "localhost:8501") == "http://localhost:5000"
    assert serve_mod.for_browser(url, "gpubox.lan:8501") == "http://gpubox.lan:5000"
    assert serve_mod.for_browser(url, "[fd00::7]:8501") == "http://[fd00::7]:5000"
    assert serve_mod.for_browser(url, "192.168.1.20:8501") == url
    assert serve_mod.for_browser(url, None) == url
    assert serve_mod.for_browser(url, "") == url


def test_the_start_up_password_becomes_a_user_and_leaves_the_environment(
    studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_PASSWORD", "correct horse")
    monkeypatch.setenv("STUDIO_USER", "boss")
    said = []
    serve_mod.apply_start_password(said.append)
    assert "STUDIO_PASSWORD" not in os.environ
    assert auth.verify("boss", "correct horse")
    assert said == ["Added the user 'boss' from STUDIO_PASSWORD."]
    monkeypatch.setenv("STUDIO_PASSWORD", "correct horse")
    serve_mod.apply_start_password(said.append)  # the same password again: nothing to say
    assert len(said) == 1
    monkeypatch.delenv("STUDIO_USER")
    monkeypatch.setenv("STUDIO_PASSWORD", "another one")
    serve_mod.apply_start_password(said.append)
    assert said[-1] == "Added the user 'admin' from STUDIO_PASSWORD."
    assert serve_mod.check_login("0.0.0.0", forced=False).startswith("Login is on: 2 users in ")

    monkeypatch.setenv("STUDIO_PASSWORD", "leaks?")
    env = serve_mod.server_env("http://127.0.0.1:5000", login=True)
    assert "STUDIO_PASSWORD" not in env and env[auth.LOGIN_ENV] == "1"
    monkeypatch.setenv(auth.LOGIN_ENV, "1")
    assert auth.LOGIN_ENV not in serve_mod.server_env(None, login=False)


STAND_IN_APP = "import streamlit as st\nst.title('stand-in')\n"
SERVE_DRIVER = (
    "import sys; from pathlib import Path; from studio.server.serve import serve; "
    "sys.exit(serve('127.0.0.1', int(sys.argv[1]), int(sys.argv[2]), app=Path(sys.argv[3]), mlflow_ui=False, "
    "login=True))"
)


def test_serve_with_login_tells_the_app_and_hides_the_password_from_every_child(
    studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    app = tmp_path / "app.py"
    app.write_text(STAND_IN_APP)
    port = free_port()  # (below the ephemeral range: tests/ports.py)
    output = tmp_path / "serve.out"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", STUDIO_PASSWORD="correct horse")
    env.pop("MLFLOW_DISABLE_TELEMETRY", None)
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_DRIVER, str(port), str(free_port()), str(app)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while "is ready" not in output.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        text = output.read_text()
        assert "is ready" in text, text
        assert "Added the user 'admin' from STUDIO_PASSWORD." in text
        assert "Login is on: 1 user in " in text
        assert "log in with a studio user" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        streamlit = next(p for p in children if "streamlit" in " ".join(p.cmdline()))
        assert streamlit.environ()[auth.LOGIN_ENV] == "1"
        assert streamlit.environ()["MLFLOW_DISABLE_TELEMETRY"] == "true"  # MLflow does not call out either
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                assert "STUDIO_PASSWORD" not in child.environ(), child.cmdline()
        from studio.jobs import scheduler_running

        assert scheduler_running()
        assert auth.verify("admin", "correct horse")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        from studio.jobs import stop_scheduler

        stop_scheduler(timeout=5)
