"""Helpers for the job tests: specs the fake worker understands, run counting, waiting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from studio.core.spec import RunSpec

FAKE_WORKER = [sys.executable, str(Path(__file__).with_name("fake_worker.py")), "{job_id}"]


def fake_spec(name: str = "fake", epochs: int = 2, device: str = "cpu") -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": "ds-fake", "target": "label"},
            "training": {"epochs": epochs, "device": device},
        }
    )


def fake_runs(home: Path) -> list[str]:
    """Job ids in the order the fake worker started them (one line per start)."""
    log = home / "fake_runs.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def tiny_csv(folder: Path, rows: int = 60) -> Path:
    """A tiny table: two numeric columns and a binary target ``y`` that depends on them."""
    import random

    rng = random.Random(0)
    lines = ["a,b,y"]
    for _ in range(rows):
        a, b = rng.random(), rng.random()
        lines.append(f"{a:.3f},{b:.3f},{int(a + b > 1)}")
    path = folder / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until(condition: Callable[[], object], timeout: float = 20.0, poll: float = 0.05):
    """Poll until ``condition()`` is truthy and return its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)
