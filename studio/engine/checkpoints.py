"""How training names its checkpoints in a folder: ``epoch-NNNN.ckpt``, one per saved epoch (1-based).
The engine writes and reads them; the job store and the executors find a job's with the same names.
Standard library only: pages import it through the job store."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

_CHECKPOINT_NAME = re.compile(r"^epoch-(\d+)\.ckpt$")


@dataclass(frozen=True)
class Checkpoint:
    """A saved training state: the run's whole state at the end of ``epoch`` (1-based)."""

    path: Path
    epoch: int


def checkpoint_file(folder: Path, epoch: int) -> Path:
    """The checkpoint of ``epoch`` (1-based) in ``folder``."""
    return Path(folder) / f"epoch-{epoch:04d}.ckpt"


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    """The newest complete checkpoint in ``folder`` (temporary files being written are ignored)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _CHECKPOINT_NAME.match(entry.name)
            if match and entry.is_file():
                found.append(Checkpoint(Path(entry.path), int(match.group(1))))
    return max(found, key=lambda c: c.epoch, default=None)
