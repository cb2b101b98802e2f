"""Tiny real tables for training tests: a few hundred rows that a small MLP learns in a few epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    x2_with_gaps = np.where(rng.random(n) < 0.1, np.nan, x2)
    score = 2 * x1 - x2 + (colour == "red") * 1.5
    label = np.where(score > 0.3, "yes", "no")
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "x1": x1.round(4),
            "x2": x2_with_gaps.round(4),
            "colour": colour,
            "amount": (score * 10 + 100 + rng.normal(scale=0.5, size=n)).round(3),
            "label": label,
        }
    )


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    make_table().to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_dataset(studio_home: Path, tiny_csv: Path):
    from studio.data import add_csv

    return add_csv(tiny_csv, name="tiny")
