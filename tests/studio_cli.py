"""``python -m studio …`` for the tests whose commands train or predict, each command in a process of its
own forked from a server that has imported the training stack once (``tests.forkserver``).

A command that trains or predicts imports torch, Lightning and MLflow first: 5-8 CPU-s of a 2-core
machine's time for each command, the same every time. Here the fork pays none of it; everything after
the imports is as in ``python -m studio``: ``studio/__main__.py`` runs as ``__main__`` with the
command's arguments, folder and environment, its output and exit code are its own, and what the
interpreter runs at its exit runs. The server imports only libraries and ``studio`` itself (which
reads no setting when imported), never the studio's modules that a setting decides (data kinds, plugins).

The command line in a fresh interpreter (how it starts, its one-line errors before anything heavy is
imported) is checked with plain subprocesses: ``tests/cli/test_cli.py``, ``tests/jobs/test_jobs_cli.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.forkserver import REPO, STUDIO, ServerEnded, with_repo


def run_studio(
    *args: str, env: dict[str, str] | None = None, cwd: str | Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess:
    """What ``subprocess.run([python, "-m", "studio", *args], cwd=cwd, env=env, capture_output=True,
    text=True, timeout=timeout)`` gives (``env`` defaults to this process's, with the repository on
    ``PYTHONPATH``), from a fork of :data:`tests.forkserver.STUDIO`."""
    command = [sys.executable, "-m", "studio", *map(str, args)]
    with tempfile.TemporaryDirectory(prefix="studio-cli-") as out:
        request = {
            "cwd": str(cwd),
            "module": "studio",
            "args": command[3:],
            "env": with_repo(dict(os.environ if env is None else env)),
            "stdout": f"{out}/stdout",
            "stderr": f"{out}/stderr",
        }
        try:
            code = STUDIO.run(request, timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(command, timeout) from None
        except ServerEnded:
            raise RuntimeError(f"the fork server ended while it ran {' '.join(args)}") from None
        stdout, stderr = (Path(out, name).read_text() for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(command, code, stdout, stderr)
