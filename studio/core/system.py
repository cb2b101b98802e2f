"""What the studio asks of the machine, in one place: which GPUs it may use (found without importing
torch, so pages and the scheduler stay light) and stopping cleanly on Ctrl+C or ``kill``."""

from __future__ import annotations

import functools
import glob
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from studio.core.forkserver import ForkedProcess, popen


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    """Names of every GPU the NVIDIA driver lists (``nvidia-smi``), whatever ``CUDA_VISIBLE_DEVICES``
    says; empty without a driver. Asked once per process."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if result.returncode != 0:
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


def _device_files() -> list[str]:
    """GPU numbers from ``/dev/nvidiaN`` (a driver without ``nvidia-smi``, as in some containers)."""
    numbers = sorted(
        int(m.group(1)) for p in glob.glob("/dev/nvidia[0-9]*") if (m := re.search(r"(\d+)$", p))
    )
    return [str(n) for n in numbers]


def visible_gpus() -> list[tuple[str, str]]:
    """The GPUs this process may use, as ``(CUDA_VISIBLE_DEVICES entry, name)`` pairs.

    ``CUDA_VISIBLE_DEVICES`` wins when set; CUDA stops at its first invalid entry, and ``-1`` is the
    usual way to hide every GPU. A GPU whose name is unknown is called ``"GPU"``."""
    names = gpu_names()
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        entries = [item.strip() for item in declared.split(",") if item.strip()]
        entries = entries[: next((i for i, e in enumerate(entries) if e.startswith("-")), len(entries))]
        return [(e, names[int(e)] if e.isdigit() and int(e) < len(names) else "GPU") for e in entries]
    if names:
        return [(str(i), name) for i, name in enumerate(names)]
    return [(number, "GPU") for number in _device_files()]


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGINT, SIGTERM and SIGHUP (the terminal was closed) set ``stop`` (so a loop can end
    cleanly); returns what puts the previous handlers back. Outside the main thread (where Python allows
    no handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def start_daemon(cmd: list[str], folder: Path, log_file: Path, env: dict[str, str]) -> subprocess.Popen | ForkedProcess:
    """Start ``cmd`` in ``folder`` in a session of its own (it outlives the process that started it),
    appending its output to ``log_file`` (a fork of the fork server when ``STUDIO_FORK_SERVER`` names one:
    :func:`studio.core.forkserver.popen`).

    A thread waits for it, so whenever it exits (a scheduler's idle exit, a search's driver at its end)
    it is reaped at once and never lingers as a zombie of a long-lived starter such as the Streamlit
    server; ``poll()`` and ``returncode`` still tell whether it has exited."""
    with open(log_file, "ab") as out:
        proc = popen(cmd, cwd=folder, env=env, stdout=out)
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc
