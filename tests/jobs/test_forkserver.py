"""The fork server the local executor can start its workers from (``studio.core.forkserver``): what a
process it starts gets (folder, environment, descriptors, session, exit code, signals), and that the
studio starts a new interpreter when no server answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import studio.core.forkserver as forkserver
from studio.core.forkserver import FORK_SERVER_ENV, UNKNOWN_EXIT, ForkedProcess, popen, start

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path):
    """A fork server that imports only ``json`` ahead; its socket's path."""
    path = str(tmp_path / "forks.sock")
    proc = subprocess.Popen(
        [sys.executable, forkserver.__file__, path, "import json"],
        stdin=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < deadline, "the fork server did not start"
        time.sleep(0.02)
    yield path, proc
    proc.stdin.close()
    proc.wait(timeout=10)
    assert not os.path.exists(path)  # it leaves no socket behind


SCRIPT = """
import json, os, sys

def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True

line = sys.stdin.readline().strip()
os.write(3, b"ready\\n")
print(json.dumps({
    "pid": os.getpid(), "session_leader": os.getsid(0) == os.getpid(), "cwd": os.getcwd(),
    "argv": sys.argv, "env": dict(os.environ), "line": line, "main": __name__,
    "server_modules": "studio" in sys.modules,
    "fds": sorted(fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd)),
}))
sys.exit(int(sys.argv[1]))
"""


def test_a_forked_process_has_its_own_folder_environment_descriptors_session_and_exit_code(
    server, tmp_path: Path
) -> None:
    path, _ = server
    (tmp_path / "job").mkdir()
    script = tmp_path / "job" / "run.py"
    script.write_text(SCRIPT)
    stdin_read, stdin_write = os.pipe()
    ready_read, ready_write = os.pipe()
    with open(tmp_path / "out.log", "wb") as out:
        proc = start(
            path,
            script=str(script),
            args=["3", "two words"],
            cwd=str(tmp_path / "job"),
            env={"ONLY": "this"},
            fds={0: stdin_read, 1: out.fileno(), 2: out.fileno(), 3: ready_write},
            stdin=os.fdopen(stdin_write, "wb"),
        )
    os.close(stdin_read)
    os.close(ready_write)
    assert isinstance(proc, ForkedProcess) and proc.poll() is None  # it waits for its input
    proc.stdin.write(b"job-1\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 3 and proc.returncode == 3
    assert os.read(ready_read, 100) == b"ready\n"  # (its own descriptor 3 was this pipe)
    said = json.loads((tmp_path / "out.log").read_text())
    assert said["pid"] == proc.pid and said["session_leader"]
    assert said["cwd"] == str(tmp_path / "job") and said["env"] == {"ONLY": "this"}
    assert said["argv"] == [str(script), "3", "two words"] and said["line"] == "job-1"
    assert said["main"] == "__main__" and not said["server_modules"]
    assert said["fds"] == [0, 1, 2, 3]  # what it was given, none of the server's (its socket, its input)


def test_a_module_runs_as_python_m_would_and_a_message_exit_is_printed(server, tmp_path: Path) -> None:
    path, _ = server
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text("import sys\nprint(__name__, sys.argv[1:])\nsys.exit('no such thing: ' + sys.argv[1])")
    with open(tmp_path / "out.log", "wb") as out, open(tmp_path / "err.log", "wb") as err:
        proc = start(
            path, module="pkg.tool", args=["x"], cwd=str(tmp_path), env={}, fds={1: out.fileno(), 2: err.fileno()}
        )
    assert proc.wait(timeout=30) == 1
    assert (tmp_path / "out.log").read_text() == "__main__ ['x']\n"  # (its folder comes first on the path)
    assert (tmp_path / "err.log").read_text() == "no such thing: x\n"


def test_signals_reach_the_process_and_its_exit_says_which(server, tmp_path: Path) -> None:
    path, _ = server
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    codes = []
    for stop in (ForkedProcess.terminate, ForkedProcess.kill):
        proc = start(path, script=str(script), args=[], cwd=str(tmp_path), env={}, fds={})
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        stop(proc)
        codes.append(proc.wait(timeout=30))
    assert codes == [-signal.SIGTERM, -signal.SIGKILL]


def test_when_the_server_dies_first_the_process_still_ends_with_a_code(server, tmp_path: Path) -> None:
    path, server_proc = server
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    proc = start(path, script=str(script), args=[], cwd=str(tmp_path), env={}, fds={})
    server_proc.kill()
    server_proc.wait()
    assert proc.poll() is None  # still running: its own session, nobody killed it
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == UNKNOWN_EXIT
    os.unlink(path)  # (a killed server leaves its socket)


def test_a_studio_process_is_forked_when_a_server_answers_and_started_with_python_m_when_none_does(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = server
    cmd = [sys.executable, "-m", "studio.cli.worker", "--help"]
    outputs = {}
    for where in (path, str(tmp_path / "nobody.sock")):
        monkeypatch.setenv(FORK_SERVER_ENV, where)
        log = tmp_path / f"{len(outputs)}.log"
        with open(log, "wb") as out:
            proc = popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out)
        assert proc.wait(timeout=60) == 0
        outputs[type(proc)] = log.read_text()
    assert set(outputs) == {ForkedProcess, subprocess.Popen}
    assert outputs[ForkedProcess] == outputs[subprocess.Popen]
    assert outputs[ForkedProcess].startswith("usage: python -m studio.cli.worker")
