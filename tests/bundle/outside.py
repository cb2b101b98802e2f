"""Running a bundle where the studio is not installed: a Python process of its own in which ``studio`` and
``lightning_modules`` cannot be imported (any attempt is recorded, and fails)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("studio", "lightning_modules")
    attempts = []

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"{name} cannot be imported in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)
"""Python that, run first, makes ``studio`` and ``lightning_modules`` unimportable; ``attempts`` lists the
names tried, ``BLOCKED`` the blocked packages."""

PREDICT = BLOCKER + textwrap.dedent(
    """
    import json, zipfile

    import mlflow
    import pandas as pd

    zipfile.ZipFile("model.zip").extractall("model")
    model = mlflow.pyfunc.load_model("model")
    model.predict(pd.read_parquet("input.parquet")).to_parquet("predictions.parquet")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    json.dump({"attempts": attempts, "loaded": loaded}, open("imports.json", "w"))
    """
)


FORK_SERVER = textwrap.dedent(
    """
    import json, os, runpy, sys, traceback

    # What every script run here imports anyway: once, in this process, before any script runs. (Not
    # transformers or huggingface_hub: they read HF_HOME and such when imported, and a script may set them.)
    import mlflow.pyfunc, numpy, pandas, pyarrow.parquet, torch  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # a fresh copy of this process runs one script, as `python runner.py` would
            code = 1
            try:
                os.chdir(request["cwd"])
                os.environ.clear()
                os.environ.update(request["env"])
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
                sys.argv = [request["script"], *request["args"]]
                sys.path[0] = os.getcwd()
                runpy.run_path(request["script"], run_name="__main__")
                code = 0
            except SystemExit as end:
                code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
    """
)
"""A process that has imported what the scripts need (mlflow, pandas, torch: ~4 CPU-s) and runs each
script in a fork of itself. Started once per test process, outside the repository and without
``PYTHONPATH``, so ``studio`` is not importable in it either; every script still gets a process of its
own (nothing one bundle loads is there for the next), with its own folder, environment and output."""

_server: tuple[subprocess.Popen, queue.Queue] | None = None


def _fork_server() -> tuple[subprocess.Popen, queue.Queue]:
    """The running fork server and the queue of its answers; a new one when there is none or it ended
    (a test that stops every child of this process stops it too): its answers never mix with a dead
    one's."""
    global _server
    if _server is None or _server[0].poll() is not None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("STUDIO_")}
        home = tempfile.mkdtemp(prefix="studio-outside-")
        server = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER], cwd=home, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        answers: queue.Queue = queue.Queue()
        threading.Thread(target=_read_answers, args=(server, answers), daemon=True).start()
        atexit.register(_stop_fork_server, server)
        _server = (server, answers)
    return _server


def _read_answers(server: subprocess.Popen, answers: queue.Queue) -> None:
    for line in server.stdout:
        answers.put(json.loads(line))
    answers.put(None)  # it ended


def _stop_fork_server(server: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        server.stdin.close()  # it exits at the end of its input
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    if server.poll() is None:
        server.kill()


def _answer(answers: queue.Queue, deadline: float) -> dict:
    try:
        answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise TimeoutError from None
    if answer is None:
        raise RuntimeError("the fork server for outside runs ended while it ran this script")
    return answer


def run_outside(
    work: Path,
    script: str,
    timeout: int = 180,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    base_env: dict[str, str] | None = None,
) -> str:
    """Run ``script`` as ``runner.py ARGS…`` in ``work`` with this Python, where the studio cannot be
    imported (no ``PYTHONPATH``, not started from the repository), in a process of its own: a fork of
    :data:`FORK_SERVER`. Its environment is ``base_env`` (default: this process's) without
    ``PYTHONPATH``, plus ``env``. Returns the script's standard output; fails the test with its error
    output when it fails or runs past ``timeout`` seconds."""
    work = Path(work).resolve()
    (work / "runner.py").write_text(script)
    base = os.environ if base_env is None else base_env
    request = {
        "cwd": str(work),
        "script": "runner.py",
        "args": [str(arg) for arg in args or []],
        "env": {k: v for k, v in base.items() if k != "PYTHONPATH"} | (env or {}),
        "stdout": str(work / "runner.out"),
        "stderr": str(work / "runner.err"),
    }
    server, answers = _fork_server()
    server.stdin.write(json.dumps(request) + "\n")
    server.stdin.flush()
    deadline = time.monotonic() + timeout
    pid = _answer(answers, deadline)["pid"]
    try:
        code = _answer(answers, deadline)["code"]
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _answer(answers, time.monotonic() + 30)
        raise AssertionError(f"runner.py ran past {timeout} s") from None
    assert code == 0, (work / "runner.err").read_text()[-3000:]
    return (work / "runner.out").read_text()


def predict_outside(bundle_zip: Path, inputs: pd.DataFrame, work: Path) -> pd.DataFrame:
    """The predictions of the bundle at ``bundle_zip`` for ``inputs`` (raw table rows, or an ``image``
    column of picture paths), made by ``mlflow.pyfunc`` in a process where the studio cannot be imported."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.zip").write_bytes(Path(bundle_zip).read_bytes())
    inputs.reset_index(drop=True).to_parquet(work / "input.parquet")
    run_outside(work, PREDICT)
    imports = json.loads((work / "imports.json").read_text())
    assert imports == {"attempts": [], "loaded": []}, imports
    return pd.read_parquet(work / "predictions.parquet")
