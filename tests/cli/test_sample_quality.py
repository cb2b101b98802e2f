"""The CLI's defaults on the small real tables that ship with scikit-learn (slow: full default runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sample", "metric", "floor"),
    [
        ("wine", "test/accuracy", 0.95),
        ("breast_cancer", "test/accuracy", 0.95),
        ("diabetes", "test/r2", 0.40),
    ],
)
def test_cli_defaults_reach_the_target_quality(studio_home, tmp_path, sample, metric, floor):
    bundle = tmp_path / f"{sample}.zip"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio",
            "train",
            "--data",
            f"sample:{sample}",
            "--bundle-out",
            str(bundle),
            "--quiet",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    value = float(re.search(rf"{re.escape(metric)}\s+([0-9.]+)", proc.stdout).group(1))
    print(f"{sample}: {metric} = {value:.4f}")
    assert value >= floor
    assert bundle.is_file()
