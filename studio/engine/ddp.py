"""Several devices for one run: Lightning's DDP strategy on one machine, with the processes started here.

A run whose spec asks for ``training.devices`` > 1 trains in that many processes, one per device (one
per GPU; on a machine without one, that many CPU processes talking over gloo, which is what the tests
use). The process that called :func:`studio.engine.training.train` (the CLI, a job's worker, a Ray job's
entrypoint, a test) is **rank 0**: it keeps everything a run owns (the MLflow run, its curves, the
progress and cancel hooks, the checkpoints, the bundle). For the other ranks it starts
``python -m studio.engine.ddp_rank PAYLOAD`` processes ("followers"): each prepares the same data and model
from the same spec and runs the same Lightning loop (:func:`studio.engine.training._run_lightning`) with
no MLflow run, no hooks and no files of its own, then exits. Rank 0 prepares its data before it starts
them, so what a data kind builds once (the picture cache) is complete when they look for it, and they
find pretrained weights where rank 0 does (they inherit its environment, ``TORCH_HOME`` included).
Tables and pictures can be shared (their DataModules have ``world_size`` and ``check_world_size``).

Why not Lightning's own launchers: its ``ddp`` strategy re-runs the current command line for every
rank, which here would be the job worker (it would try to claim the job again), a warm worker reading a
job id on stdin, the CLI (a second MLflow run) or pytest itself; ``ddp_spawn`` pickles the model and
callbacks into fresh processes and hands only the weights back, so the callbacks' state (best epoch,
early stopping, the MLflow buffer, the job hooks) would be lost. Starting the ranks here, with a
:class:`ClusterEnvironment` that tells Lightning so (``creates_processes_externally``), works the same
from every caller.

Every decision that ends or changes the loop is the same on every rank: losses, validation metrics and
row counts are summed over the ranks (``lightning_modules``), a cancel request and the checkpoint clock
are rank 0's, broadcast. When rank 0 leaves the loop in any other way (an error), it kills the followers;
a follower that dies makes rank 0's next collective fail (gloo at once; NCCL after
``STUDIO_DDP_TIMEOUT_SECONDS``, default 600).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from studio.core.errors import TrainingError

log = logging.getLogger("studio.engine.ddp")

TIMEOUT_ENV = "STUDIO_DDP_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 600.0
FOLLOWER_EXIT_SECONDS = 60.0
"""How long rank 0 waits for the followers to exit after the last step, before it kills them."""
ADDRESS = "127.0.0.1"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def world_size(devices: str, *, gpus: int | None) -> int:
    """How many processes a run asking ``devices`` trains in: the number asked, or for ``auto`` every
    GPU this process can see (``gpus``; ``None`` when it trains on the CPU, where ``auto`` means one).

    Raises a plain :class:`TrainingError` when more GPUs are asked than there are."""
    if devices == "auto":
        return max(1, gpus or 1)
    wanted = int(devices)
    if gpus is not None and wanted > gpus:
        have = f"only {gpus} GPU is" if gpus == 1 else f"only {gpus} GPUs are"
        raise TrainingError(
            f"The run asks for {wanted} devices, but {have} available to it here: set Devices to "
            f"{gpus} (or 'auto' for every free GPU), or run it where {wanted} GPUs are free."
        )
    return wanted


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        return max(10.0, float(raw)) if raw else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        return DEFAULT_TIMEOUT_SECONDS


def share_data(data: Any, world: int) -> None:
    """Tell the DataModule how many processes share it (its steps per epoch depend on it); a plain
    error when its data kind cannot be shared (tables and pictures can), or has too few rows for that
    many."""
    if world <= 1:
        return
    if not hasattr(data, "world_size") or not hasattr(data, "check_world_size"):
        raise TrainingError(
            "This kind of data cannot be trained on several devices yet; set Devices to 1 for this run."
        )
    data.world_size = world
    data.check_world_size()


class NoMetrics:
    """A follower's stand-in for the MLflow metric buffer: rank 0 logs the run's curves."""

    def add(self, metrics: dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def _environment(rank: int, world: int, port: int) -> Any:
    from lightning_fabric.plugins.environments import ClusterEnvironment

    class StudioRanks(ClusterEnvironment):
        """The ranks this module starts: fixed rank, world size and rendezvous on this machine."""

        @property
        def creates_processes_externally(self) -> bool:
            return True  # Lightning must not launch any process itself

        @property
        def main_address(self) -> str:
            return ADDRESS

        @property
        def main_port(self) -> int:
            return port

        @staticmethod
        def detect() -> bool:
            return False

        def world_size(self) -> int:
            return world

        def set_world_size(self, size: int) -> None:
            if size != world:
                raise RuntimeError(f"Lightning computed {size} processes; the studio started {world}")

        def global_rank(self) -> int:
            return rank

        def set_global_rank(self, value: int) -> None:
            if value != rank:
                raise RuntimeError(f"Lightning computed rank {value}; this process is rank {rank}")

        def local_rank(self) -> int:
            return rank

        def node_rank(self) -> int:
            return 0

    return StudioRanks()


def strategy(plan: Any, rank: int, port: int) -> Any:
    """Lightning's DDP strategy for this rank (gloo on CPUs, NCCL on GPUs)."""
    from pytorch_lightning.strategies import DDPStrategy

    return DDPStrategy(
        cluster_environment=_environment(rank, plan.world_size, port),
        process_group_backend="gloo" if plan.accelerator == "cpu" else "nccl",
        timeout=timedelta(seconds=timeout_seconds()),
    )


@contextlib.contextmanager
def ranks(plan: Any, payload: dict[str, Any], *, rank: int = 0, port: int | None = None) -> Iterator[Any]:
    """The Trainer's ``strategy`` for this process (``"auto"`` with one device).

    On rank 0 (``port`` None) it starts the followers first, with ``payload`` (what they need to build
    the same run: see :func:`follow`); on the way out it waits for them after a normal end and kills them
    otherwise. On a follower (``port`` given) it only closes the process group at the end."""
    if plan.world_size <= 1:
        yield "auto"
        return
    followers: list[subprocess.Popen] = []
    leader = port is None
    folder = None
    if leader:
        port = free_port()
        folder = tempfile.TemporaryDirectory(prefix="studio-ddp-")
        followers = _start_followers(plan, payload, port, Path(folder.name))
    ended = False
    saved = _process_settings()
    try:
        yield strategy(plan, rank, port)
        ended = True
    finally:
        _close_group(together=ended)
        _restore_process_settings(saved)
        if leader:
            _stop_followers(followers, wait=ended)
            assert folder is not None
            folder.cleanup()


_SET_BY_LIGHTNING = ("OMP_NUM_THREADS", "MASTER_ADDR", "MASTER_PORT")


def _process_settings() -> tuple[int, dict[str, str | None]]:
    """What Lightning's DDP changes in this process for the run (torch's threads, which it shares among
    the processes, and a few environment variables), to put back afterwards: rank 0 may be a process
    that goes on (a test session, a search) and starts other processes."""
    import torch

    return torch.get_num_threads(), {name: os.environ.get(name) for name in _SET_BY_LIGHTNING}


def _restore_process_settings(saved: tuple[int, dict[str, str | None]]) -> None:
    import torch

    threads, env = saved
    torch.set_num_threads(threads)
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _start_followers(plan: Any, payload: dict[str, Any], port: int, folder: Path) -> list[subprocess.Popen]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    followers = []
    for rank in range(1, plan.world_size):
        path = folder / f"rank-{rank}.json"
        path.write_text(json.dumps({**payload, "rank": rank, "port": port, "plan": _plan_dict(plan)}))
        followers.append(
            subprocess.Popen(
                [sys.executable, "-m", "studio.engine.ddp_rank", str(path)],
                env=env,
                stdin=subprocess.DEVNULL,
                cwd=os.getcwd(),
            )
        )
    log.info("started %d more training processes on port %d", len(followers), port)
    return followers


def _close_group(*, together: bool) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if together:  # every rank got here: none is still in a collective when the group goes
        with contextlib.suppress(Exception):
            dist.barrier()
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def _stop_followers(followers: list[subprocess.Popen], *, wait: bool) -> None:
    deadline = time.monotonic() + (FOLLOWER_EXIT_SECONDS if wait else 0.0)
    for proc in followers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        elif wait and proc.returncode != 0:
            log.warning("training process %s ended with exit code %s", proc.pid, proc.returncode)


def _plan_dict(plan: Any) -> dict[str, Any]:
    return {
        "accelerator": plan.accelerator,
        "devices": plan.devices,
        "precision": plan.precision,
        "description": plan.description,
        "world_size": plan.world_size,
    }
