"""A data kind added from the tests alone (``toy_kind``: its own task, network, DataModule and
bundle) trains end to end through the CLI: the engine, the spec and the CLI look the kind up and
never need an edit for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "tests.modalities.toy_kind"


def run_cli(*args: str, plugin: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STUDIO_MODALITIES", None)
    if plugin:
        env["STUDIO_MODALITIES"] = PLUGIN
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def sums_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    frame["y"] = 3 * frame["a"] - 2 * frame["b"] + 0.05 * rng.normal(size=200)
    path = tmp_path / "sums.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_kind_registered_from_the_tests_trains_end_to_end_through_the_cli(studio_home, tmp_path, sums_csv):
    out = tmp_path / "toy.zip"
    done = run_cli(
        "train", "--data", str(sums_csv), "--target", "y", "--task", "toy_sum", "--epochs", "30", "--lr", "0.05",
        "--bundle-out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    r2 = float(next(line for line in done.stdout.splitlines() if "test/r2" in line).split()[-1])
    assert r2 > 0.95, done.stdout
    with zipfile.ZipFile(out) as zf:
        model = json.loads(zf.read("toy_model.json"))
    assert model["kind"] == "toy" and model["columns"] == ["a", "b", "c"]
    weight = np.array(model["weight"]) / np.array(model["std"]) * model["target_std"]
    np.testing.assert_allclose(weight, [3, -2, 0], atol=0.2)  # it learnt the sum's own weights

    import mlflow

    run_id = next(line for line in done.stdout.splitlines() if line.startswith("MLflow run id:")).split()[-1]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["studio.kind"] == "toy" and run.data.tags["studio.toy_columns"] == "a, b, c"
    assert run.data.params["task"] == "toy_sum" and run.data.params["architecture.name"] == "toy_linear"


def test_without_the_kind_its_task_is_refused_in_one_line_naming_the_tasks(studio_home, sums_csv):
    done = run_cli("train", "--data", str(sums_csv), "--target", "y", "--task", "toy_sum", plugin=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "task must be one of 'classification', 'regression', 'text_classification' or 'text_regression' (got 'toy_sum')" in done.stderr
