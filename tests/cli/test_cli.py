"""``python -m studio`` in processes of their own: train, predict, data sets, and one-line errors (in fresh
interpreters; the commands that train and predict in forks of a server that has imported the training
stack, ``tests.studio_cli``)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.studio_cli import run_studio

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    n = 150
    x = rng.normal(size=(n, 2))
    frame = pd.DataFrame(
        {"a": x[:, 0].round(3), "b": x[:, 1].round(3), "kind": np.where(x.sum(1) > 0, "up", "down")}
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False, sep=";", decimal=",")
    return path


def test_train_then_predict_with_the_bundle(studio_home, tmp_path, table_csv):
    bundle = tmp_path / "model.zip"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "training:\n  epochs: 30\n  batch_size: 16\narchitecture:\n  name: mlp\n  params:\n    width: 32\n"
        # one model (a 150-row table starts with five fold models: tests/training/test_fold_ensemble.py
        # trains those, tests/test_fold_defaults.py checks the CLI's rule)
        "data:\n  use_all_data: false\n"
    )
    proc = run_studio(
        "train", "--data", str(table_csv), "--spec", str(spec), "--epochs", "6", "--bundle-out", str(bundle)
    )
    assert proc.returncode == 0, proc.stderr
    assert "MLflow run id:" in proc.stdout and "test/accuracy" in proc.stdout
    assert "Stopped after 6 epochs" in proc.stdout  # the flag overrides the spec file
    assert "First training step logged" in proc.stdout
    # the scores against a trivial guess on the same test rows, and the epoch kept
    assert re.search(
        r"^(No better|Barely better|Better) than a guess: .* on the same \d+ rows", proc.stdout, re.M
    )
    assert re.search(r"^Kept epoch \d+ of 6", proc.stdout, re.M)
    assert bundle.is_file()

    listed = run_studio("datasets", "list")
    assert listed.returncode == 0 and "table" in listed.stdout

    out = tmp_path / "predictions.csv"
    predicted = run_studio("predict", str(bundle), str(table_csv), "--out", str(out))
    assert predicted.returncode == 0, predicted.stderr
    frame = pd.read_csv(out)
    assert {"predicted_kind", "probability_down", "probability_up"} <= set(frame.columns)
    assert len(frame) == 150
    assert (frame["predicted_kind"] == pd.read_csv(table_csv, sep=";", decimal=",")["kind"]).mean() > 0.8
    assert frame["prediction_warning"].isna().all()  # ordinary rows: nothing to say

    odd = tmp_path / "odd.csv"
    odd.write_text("note,a,b\nempty,,\nfar,100,0.5\nusual,0.5,-0.5\n")
    predicted = run_studio("predict", str(bundle), str(odd))
    assert predicted.returncode == 0, predicted.stderr
    assert "warning: 2 of 3 rows are guesses" in predicted.stderr
    warnings = pd.read_csv(io.StringIO(predicted.stdout))["prediction_warning"].tolist()
    assert warnings[0] == "every input is empty: this is a guess from nothing"
    assert warnings[1].startswith("a 100 is far outside the training range (")
    assert pd.isna(warnings[2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--data", "no-such-file.csv"), "no-such-file.csv"),
        (("train", "--data", "sample:wine", "--target", "colour"), "colour"),
        (("train", "--data", "sample:wine", "--epochs", "0"), "training.epochs must be at least 1"),
        (
            ("train", "--data", "sample:wine", "--set", "optimizer.name=rmsprop"),
            "optimizer.name must be one of",
        ),
        (("train", "--data", "sample:wine", "--arch", "transformer"), "choose one of: mlp, linear"),
        (
            ("train", "--data", "sample:wine", "--spec", "missing.yaml"),
            "Spec file 'missing.yaml' does not exist",
        ),
        (("predict", "missing.zip", "x.csv"), "missing.zip"),
        (("datasets", "show", "nope-123"), "nope-123"),
    ],
)
def test_user_errors_exit_2_with_one_plain_line(studio_home, args, message):
    proc = run_cli(*args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_train_without_target_asks_for_one_when_the_table_does_not_say(studio_home, tmp_path):
    visits = tmp_path / "visits.csv"
    visits.write_text(
        "user_id,signup_date,visits,last_seen\n"
        + "".join(f"{i},2023-01-{1 + i % 28:02d},{i % 7},2024-02-{1 + i % 28:02d}\n" for i in range(40))
    )
    proc = run_cli("train", "--data", str(visits), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: Say which column to predict with --target COLUMN; the studio cannot tell for this table "
        "(its columns: user_id, signup_date, visits, last_seen)."
    ]


def test_bad_csv_is_refused_in_one_line(studio_home, tmp_path):
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    proc = run_cli("datasets", "add", str(bad))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "mlflow_ui", "standby"),
    [([], True, True), (["--no-mlflow-ui"], False, True), (["--no-standby", "--no-mlflow-ui"], False, False)],
)
def test_serve_flags_reach_serve(monkeypatch, flags, mlflow_ui, standby):
    """``serve --no-mlflow-ui`` and ``--no-standby`` are what ``serve`` gets (the browser tests of pages
    run the real command with both)."""
    from studio.cli.main import build_parser
    from studio.server import serve

    got = {}
    monkeypatch.setattr(serve, "serve", lambda **kwargs: got.update(kwargs) or 0)
    args = build_parser().parse_args(["serve", "--port", "8599", *flags])
    assert args.handler(args) == 0
    assert (got["mlflow_ui"], got["standby"], got["port"]) == (mlflow_ui, standby, 8599)
