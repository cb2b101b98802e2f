"""Small tables and specs for the search tests."""

from __future__ import annotations

import random
from pathlib import Path

from studio.core.spec import RunSpec


def tiny_dataset(folder: Path, rows: int = 80) -> str:
    """A stored tiny table: two numeric columns and a binary target ``y`` that depends on them."""
    from studio.data import add_csv

    rng = random.Random(0)
    lines = ["a,b,y"]
    for _ in range(rows):
        a, b = rng.random(), rng.random()
        lines.append(f"{a:.3f},{b:.3f},{int(a + b > 1)}")
    path = folder / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    return add_csv(path).id


def tiny_spec(dataset_id: str, epochs: int = 2, **sections: dict) -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": "tiny",
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "y"},
            "training": {"epochs": epochs, "device": "cpu"},
            **sections,
        }
    )
