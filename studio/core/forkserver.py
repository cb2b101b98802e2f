"""A fork server: a process that has imported what its processes need once, and starts each of them as a
fork of itself. A process it starts is still a process of its own (its own session, folder, environment,
file descriptors and exit code; nothing one of them loads is left for the next), but it begins with torch,
Lightning and MLflow already imported instead of paying ~7 CPU-s of imports first.

When ``STUDIO_FORK_SERVER`` names the socket of one, the studio starts its own Python processes (``python
-m studio…``: job workers and warm workers, the scheduler, a search's driver) as forks of it
(:func:`popen`); when it names none, or none answers there, as new interpreters, as it always does by
default. The tests use one per test process: each test starts a scheduler and a warm worker of its own,
and the fast suite's workers alone used to pay the same imports 17 times.

Started as ``python …/studio/core/forkserver.py SOCKET PRELOAD``, by its path: it imports nothing of
the studio itself (PRELOAD decides what it imports), so it can also start processes where the studio must
not be importable. It runs the Python PRELOAD once, then serves on the Unix socket SOCKET (made only
then, so a client that finds the socket finds a server that is ready) until its standard input closes.

One request per connection: a JSON line with file descriptors passed beside it (``SCM_RIGHTS``)::

    {"module": "studio.cli.worker" | "script": "run.py", "args": [...], "cwd": "...", "env": {...},
     "fds": [0, 1, 2, 3]}

The n-th passed descriptor becomes the process's descriptor ``fds[n]`` (standard input is ``/dev/null``
when none is given, and the server's sockets are closed). The
process leads a session of its own (as ``start_new_session=True``), runs the module (as ``python -m``)
or the script (as ``python SCRIPT``) with ``args``, then what the interpreter runs at its exit. The
answer is ``{"pid": PID}`` at once, then ``{"code": CODE}`` when the process has exited (``-N`` for a
signal, as :attr:`subprocess.Popen.returncode`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

log = logging.getLogger("studio.forkserver")

FORK_SERVER_ENV = "STUDIO_FORK_SERVER"
"""The socket of a fork server that the studio starts its own processes from (none: ``python -m``)."""
UNKNOWN_EXIT = 255
"""The exit code of a process whose fork server ended before it did (nobody could wait for it)."""
MAX_REQUEST = 1 << 22
MAX_FDS = 16


# --------------------------------------------------------------------------- the client side
class ForkedProcess:
    """What the studio uses of :class:`subprocess.Popen`, for a process that a fork server started (it is
    the server's child, so its exit code comes from the server)."""

    def __init__(self, connection: socket.socket, pid: int, args: list[str], stdin=None) -> None:  # noqa: ANN001
        self.pid = pid
        self.args = args
        self.stdin = stdin
        self.returncode: int | None = None
        self._connection = connection
        self._connection.setblocking(False)
        self._unread = b""
        self._reading = threading.Lock()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._read(0.5 if left is None else min(left, 0.5))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _read(self, timeout: float) -> None:
        """Read the server's word for up to ``timeout`` seconds. One thread reads at a time: another one
        that finds a thread reading (a reaper in its :meth:`wait`) leaves it to that one."""
        got = self._reading.acquire(timeout=timeout) if timeout > 0 else self._reading.acquire(blocking=False)
        if not got:
            return
        try:
            if self._connection.fileno() < 0:  # the server has gone: is the process gone too?
                if not _running(self.pid):
                    self.returncode = UNKNOWN_EXIT
                elif timeout:
                    time.sleep(timeout)
                return
            readable, _, _ = select.select([self._connection], [], [], timeout)
            if not readable:
                return
            try:
                chunk = self._connection.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._connection.close()
                if not _running(self.pid):
                    self.returncode = UNKNOWN_EXIT
                return
            self._unread += chunk
            while b"\n" in self._unread:
                line, self._unread = self._unread.split(b"\n", 1)
                answer = json.loads(line)
                if "code" in answer:
                    self.returncode = int(answer["code"])
                    self._connection.close()
        finally:
            self._reading.release()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def start(
    server: str,
    *,
    module: str | None = None,
    script: str | None = None,
    args: list[str],
    cwd: str,
    env: dict[str, str],
    fds: dict[int, int],
    stdin=None,  # noqa: ANN001  (the writing end the caller keeps, as Popen(stdin=PIPE).stdin)
    timeout: float = 10.0,
) -> ForkedProcess:
    """Ask the fork server at the socket ``server`` to start ``module`` (or ``script``) with ``args``, in
    ``cwd`` with exactly ``env``; ``fds`` maps each of the process's descriptors to one of this process's
    (which stay this process's to close). ``OSError`` when no server answers there."""
    request = {"args": list(args), "cwd": cwd, "env": env, "fds": list(fds)}
    request.update({"module": module} if module else {"script": script})
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        connection.connect(server)
        data = json.dumps(request).encode() + b"\n"
        sent = socket.send_fds(connection, [data], list(fds.values()))
        connection.sendall(data[sent:])
        unread = b""
        while b"\n" not in unread:
            chunk = connection.recv(4096)
            if not chunk:
                raise ConnectionError("the fork server closed the connection without starting the process")
            unread += chunk
        line, rest = unread.split(b"\n", 1)
        pid = int(json.loads(line)["pid"])
    except BaseException:
        connection.close()
        raise
    process = ForkedProcess(connection, pid, [module or script or "", *args], stdin)
    process._unread = rest
    return process


def popen(
    cmd: list[str],
    *,
    cwd: str | os.PathLike,
    env: dict[str, str],
    stdout,  # noqa: ANN001  (an open file: the process's output and errors)
    stdin_pipe: bool = False,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen | ForkedProcess:
    """``subprocess.Popen(cmd, cwd=cwd, env=env, stdin=PIPE if stdin_pipe else DEVNULL, stdout=stdout,
    stderr=STDOUT, start_new_session=True, pass_fds=pass_fds)``; a ``python -m studio…`` command is a
    fork of the fork server instead when ``STUDIO_FORK_SERVER`` names one that answers."""
    server = os.environ.get(FORK_SERVER_ENV, "").strip()
    module = cmd[2] if len(cmd) > 2 and cmd[:2] == [sys.executable, "-m"] else ""
    if server and module.split(".")[0] == "studio":
        read_end, write_end = os.pipe() if stdin_pipe else (None, None)
        fds = {1: stdout.fileno(), 2: stdout.fileno(), **{fd: fd for fd in pass_fds}}
        if read_end is not None:
            fds[0] = read_end
        try:
            proc = start(server, module=module, args=cmd[3:], cwd=str(cwd), env=env, fds=fds)
        except OSError as err:
            log.info("no fork server answers at %s (%s): %s starts with python -m", server, err, module)
        else:
            if read_end is not None:
                proc.stdin = os.fdopen(write_end, "wb")
            return proc
        finally:
            if read_end is not None:
                os.close(read_end)
        if write_end is not None:
            os.close(write_end)
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=pass_fds,
    )


# --------------------------------------------------------------------------- the server side
def serve(path: str, preload: str) -> int:
    """Run ``preload``, then start a process for each request on the socket ``path`` until standard
    input closes (see the module's docstring)."""
    exec(compile(preload, "<preload>", "exec"), {"__name__": "__preload__"})
    gc.freeze()  # what the preload made is never collected: its pages stay shared with every fork
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    os.rename(path + ".new", path)  # a client finds the socket only once the server listens on it
    listener.listen(64)
    waiting: dict[int, socket.socket] = {}  # pid -> the connection that is told its exit code
    try:
        while True:
            readable, _, _ = select.select([listener, 0], [], [], 0.1)
            if 0 in readable and not os.read(0, 4096):
                return 0
            if listener in readable:
                connection, _ = listener.accept()
                pid = _answer(connection, listener, waiting)
                if pid is not None:
                    waiting[pid] = connection
                else:
                    connection.close()
            _reap(waiting)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _answer(connection: socket.socket, listener: socket.socket, waiting: dict[int, socket.socket]) -> int | None:
    fds: list[int] = []
    try:
        connection.settimeout(10)
        data, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, MAX_FDS)
        while data and not data.endswith(b"\n") and len(data) < MAX_REQUEST:
            chunk = connection.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
        request = json.loads(data)
        if len(request["fds"]) != len(fds):
            raise ValueError("the request names another number of descriptors than it passed")
    except (OSError, ValueError, KeyError):
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return None
    sys.stdout.flush()  # (nothing of the server's output is written twice)
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the new process: it never returns from here
        _child(request, fds, [listener.fileno(), connection.fileno(), *(c.fileno() for c in waiting.values())])
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    return pid


def _reap(waiting: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            connection.close()


def _child(request: dict, passed: list[int], server_fds: list[int]) -> None:
    """Become the process the request asks for, as ``python -m MODULE ARGS`` or ``python SCRIPT ARGS``
    would be, then exit with its code."""
    import atexit
    import runpy
    import traceback

    code = 1
    try:
        os.setsid()
        for fd in server_fds:  # (the server's socket and its other clients': never a process's)
            with contextlib.suppress(OSError):
                os.close(fd)
        targets = [int(t) for t in request["fds"]]
        floor = max([2, *targets, *passed]) + 1  # out of the way of every target first, then into place
        moved = [_dup_above(fd, floor) for fd in passed]
        for fd in passed:
            os.close(fd)
        for target, fd in zip(targets, moved, strict=True):
            os.dup2(fd, target)
        for fd in moved:
            os.close(fd)
        if 0 not in targets:  # never the server's own input (its parent's pipe)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if "module" in request:  # python -m MODULE: its folder first on the path
            sys.argv = [request["module"], *request["args"]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        else:  # python SCRIPT: the script's folder first on the path
            script = os.path.abspath(request["script"])
            sys.argv = [request["script"], *request["args"]]
            sys.path.insert(0, os.path.dirname(script))
            runpy.run_path(script, run_name="__main__")
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
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _dup_above(fd: int, floor: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, floor)


if __name__ == "__main__":
    sys.path.pop(0)  # (this file's folder: its modules are not top-level ones)
    sys.exit(serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
