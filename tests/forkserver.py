"""Python processes for the tests that import what they run once, then run each script or module in a
fork of themselves: every run is still a process of its own (its own folder, environment, standard
streams and exit code, nothing one run loads left for the next), without paying the imports again.

Two are used: ``tests.bundle.outside`` runs bundles where the studio cannot be imported, and
``tests.studio_cli`` runs ``python -m studio …`` commands that train or predict. A server is started the
first time a test process needs it and replaced when it has ended (a test that stops every child of its
process stops it too); it exits when its input closes, at the latest when the test process ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SERVER = """
import atexit, json, os, runpy, sys, traceback

exec(sys.argv[1])  # what every run imports anyway, once, before any run

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:  # a fresh copy of this process runs one script or module, as `python …` would
        code = 1
        try:
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # (not the server's own input: its requests)
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            if "module" in request:  # python -m MODULE ARGS…
                sys.argv = [request["module"], *request["args"]]
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            else:  # python SCRIPT ARGS…
                sys.argv = [request["script"], *request["args"]]
                sys.path[0] = os.getcwd()
                runpy.run_path(request["script"], run_name="__main__")
            code = 0
        except SystemExit as end:
            if isinstance(end.code, str):
                print(end.code, file=sys.stderr)
            code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                atexit._run_exitfuncs()  # what the interpreter runs at its exit
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
"""
"""The server: its first argument is the Python it runs before reading requests (one JSON per line)."""


class ServerEnded(RuntimeError):
    """The server ended while it ran a request."""


@dataclass
class ForkServer:
    """One kind of server: what it imports ahead (``preload``), where it starts and with what environment
    (``cwd``, ``env``: callables, read when a server starts)."""

    preload: str
    cwd: Callable[[], str]
    env: Callable[[], dict[str, str]]
    _running: tuple[subprocess.Popen, queue.Queue] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def process(self) -> tuple[subprocess.Popen, queue.Queue]:
        """The running server and the queue of its answers; a new one when there is none or it ended
        (its answers never mix with a dead one's)."""
        if self._running is None or self._running[0].poll() is not None:
            server = subprocess.Popen(
                [sys.executable, "-c", SERVER, self.preload], cwd=self.cwd(), env=self.env(),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            answers: queue.Queue = queue.Queue()
            threading.Thread(target=_read_answers, args=(server, answers), daemon=True).start()
            atexit.register(stop, server)
            self._running = (server, answers)
        return self._running

    def run(self, request: dict, timeout: float) -> int:
        """Run one request; its exit code. A run past ``timeout`` seconds is killed (``TimeoutError``)."""
        with self._lock:  # one run at a time: the answers come in order
            server, answers = self.process()
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            deadline = time.monotonic() + timeout
            pid = _answer(answers, deadline)["pid"]
            try:
                return _answer(answers, deadline)["code"]
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _answer(answers, time.monotonic() + 30)
                raise


def _read_answers(server: subprocess.Popen, answers: queue.Queue) -> None:
    for line in server.stdout:
        answers.put(json.loads(line))
    answers.put(None)  # it ended


def _answer(answers: queue.Queue, deadline: float) -> dict:
    try:
        answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise TimeoutError from None
    if answer is None:
        raise ServerEnded("the fork server ended while it ran this request")
    return answer


def stop(server: subprocess.Popen) -> None:
    """Let a server go: it exits at the end of its input (killed when it does not within 10 s)."""
    with contextlib.suppress(OSError):
        server.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    if server.poll() is None:
        server.kill()
