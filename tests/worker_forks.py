"""The tests' fork server for the studio's workers (:mod:`studio.jobs.forkserver`), one per test process.

Every test that runs a real job starts a scheduler of its own, and that scheduler a warm worker of its
own, which imported torch, Lightning and MLflow first: ~7 CPU-s each, the same every time, 17 times in
the fast suite. With ``STUDIO_WORKER_FORK_SERVER`` naming this server's socket (``tests/conftest.py``
sets it for every test), each worker is a fork of a process that has imported them once; it is still
the same worker (``python -m studio.cli.worker``'s code, arguments, folder, environment, session, output
and exit code), which is all a scheduler sees of it.

Tests marked ``python_m_workers`` (and the browser tests) start their workers as new interpreters, as a
studio does by default: they look at the processes themselves (command lines, parents, environments).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import studio.jobs.forkserver as forkserver
from studio.jobs.forkserver import FORK_SERVER_ENV

REPO = Path(__file__).resolve().parents[1]
PRELOAD = "import studio, pandas, torch, torchmetrics, pytorch_lightning, mlflow.pyfunc, mlflow.store.tracking.sqlalchemy_store"
"""What every worker imports anyway (never a module of the studio's that a setting decides)."""
_BASE_ENV = {k: v for k, v in os.environ.items() if k != FORK_SERVER_ENV}  # before any test changes it


class WorkerForkServer:
    """The server of this test process, started when first asked for and again when it has ended."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.path = ""

    def socket(self) -> str:
        """The socket to put in ``STUDIO_WORKER_FORK_SERVER``. A server that has just started answers
        only once it has imported (a few seconds): until then a worker starts as a new interpreter."""
        if self.proc is None or self.proc.poll() is not None:
            self.path = str(Path(tempfile.mkdtemp(prefix="studio-forks-")) / "server.sock")
            paths = [str(REPO), *filter(None, _BASE_ENV.get("PYTHONPATH", "").split(os.pathsep))]
            self.proc = subprocess.Popen(
                [sys.executable, forkserver.__file__, self.path, PRELOAD],
                cwd=REPO,
                env={**_BASE_ENV, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))},
                stdin=subprocess.PIPE,  # it exits when this closes: at the latest when this process ends
            )
            atexit.register(_stop, self.proc, Path(self.path).parent)
        return self.path

    def wait_ready(self, timeout: float = 60) -> str:
        """:meth:`socket`, once the server answers there."""
        path = self.socket()
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the tests' worker fork server did not start")
            time.sleep(0.05)
        return path


def _stop(proc: subprocess.Popen, folder: Path) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(folder, ignore_errors=True)


SERVER = WorkerForkServer()
