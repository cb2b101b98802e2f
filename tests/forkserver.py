"""Fork servers for the tests: processes that import what their runs need once, then start each run as a
fork of themselves (the studio's own server, ``studio/core/forkserver.py``, run by its path). Every run is
still a process of its own (its own folder, environment, standard streams, session and exit code,
nothing one run loads left for the next), without paying the imports again.

Two kinds are used, each started the first time a test process needs it and again when it has ended (a
test that stops every child of its process stops it too); a server exits when its input closes, at the
latest when the test process ends:

- :data:`STUDIO`: torch, Lightning, MLflow, onnx and ``studio`` imported. The studio's workers that the tests'
  schedulers start are forks of it (``STUDIO_FORK_SERVER``, set in ``tests/conftest.py``: each
  test starts a scheduler and a warm worker of its own, and each of those used to pay ~7 CPU-s of
  imports), and so are the ``python -m studio`` commands that train or predict (``tests.studio_cli``).
  It imports only libraries and ``studio`` itself (which reads no setting when imported), never the
  studio's modules that a setting decides (data kinds, plugins).
- ``tests.bundle.outside``'s: runs bundles where the studio cannot be imported.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import studio.core.forkserver as forkserver
from studio.core.forkserver import FORK_SERVER_ENV, UNKNOWN_EXIT

REPO = Path(__file__).resolve().parents[1]


class ServerEnded(RuntimeError):
    """The server ended while it ran a request (its run's exit code is lost)."""


class ForkServer:
    """One kind of server: what it imports ahead (``preload``), where it starts and with what environment
    (``cwd``, ``env``: callables, read when a server starts)."""

    def __init__(self, preload: str, cwd: Callable[[], str], env: Callable[[], dict[str, str]]) -> None:
        self.preload, self.cwd, self.env = preload, cwd, env
        self.proc: subprocess.Popen | None = None
        self.path = ""

    def socket(self) -> str:
        """The server's socket; a new server when there is none or it has ended. A server that has just
        started answers there once it has imported (seconds): :meth:`ready` waits for that."""
        if self.proc is None or self.proc.poll() is not None:
            folder = Path(tempfile.mkdtemp(prefix="studio-forks-"))
            self.path = str(folder / "server.sock")
            self.proc = subprocess.Popen(
                [sys.executable, forkserver.__file__, self.path, self.preload],
                cwd=self.cwd(),
                env=self.env(),
                stdin=subprocess.PIPE,  # it exits when this closes
            )
            atexit.register(stop, self.proc, folder)
        return self.path

    def ready(self, timeout: float = 120) -> str:
        """:meth:`socket`, once the server answers there."""
        path = self.socket()
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServerEnded("the fork server did not start")
            time.sleep(0.02)
        return path

    def run(self, request: dict, timeout: float) -> int:
        """Run one request (``cwd``, ``module`` or ``script``, ``args``, ``env``, and the files its
        ``stdout`` and ``stderr`` go to); its exit code. A run past ``timeout`` seconds is killed
        (``TimeoutError``)."""
        path = self.ready()
        with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
            proc = forkserver.start(
                path,
                module=request.get("module"),
                script=request.get("script"),
                args=request["args"],
                cwd=request["cwd"],
                env=request["env"],
                fds={1: out.fileno(), 2: err.fileno()},
            )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            raise TimeoutError from None
        if code == UNKNOWN_EXIT and self.proc is not None and self.proc.poll() is not None:
            raise ServerEnded("the fork server ended while it ran this request")
        return code


def stop(server: subprocess.Popen, folder: Path | None = None) -> None:
    """Let a server go: it exits at the end of its input (killed when it does not within 10 s)."""
    if server.stdin is not None:
        server.stdin.close()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def with_repo(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the repository first on ``PYTHONPATH``."""
    others = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    return {**env, "PYTHONPATH": os.pathsep.join([str(REPO), *others])}


_BASE_ENV = with_repo({k: v for k, v in os.environ.items() if k != FORK_SERVER_ENV})  # before any test's changes

STUDIO = ForkServer(
    "import studio, pandas, torch, torchmetrics, pytorch_lightning, mlflow.pyfunc, "
    "mlflow.store.tracking.sqlalchemy_store, onnx",
    cwd=lambda: str(REPO),
    env=lambda: dict(_BASE_ENV),
)
"""The server whose forks are the studio's workers and the CLI commands that train (see above)."""


def wait_for_fork_server() -> None:
    """When this test's workers are to be forks (``STUDIO_FORK_SERVER`` names :data:`STUDIO`'s socket),
    wait until that server answers; if it never does, they start as new interpreters."""
    if os.environ.get(FORK_SERVER_ENV) == STUDIO.path:
        with contextlib.suppress(ServerEnded):
            STUDIO.ready()
