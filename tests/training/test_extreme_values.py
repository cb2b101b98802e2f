"""A table with ±1e300 in it trains from the CLI and as a job with no traceback, and every JSON file the
run writes (studio_model.json, the profile, the MLflow artifacts) holds only finite numbers."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio import jobs, tracking
from studio.core.spec import RunSpec
from tests.pages.test_runs_page import run_in_process


def strict_json(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))


@pytest.fixture
def extreme_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 160
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "y": 3 * x1 - x2 + rng.normal(scale=0.1, size=n)})
    frame = frame.astype(object)
    frame.loc[5, "x1"], frame.loc[7, "x1"], frame.loc[9, "y"] = 1e300, -1e300, 1e300
    path = tmp_path / "extreme.csv"
    frame.to_csv(path, index=False)
    return path


def test_cli_trains_on_extreme_values_without_a_traceback(
    studio_home: Path, tmp_path: Path, extreme_csv: Path, capsys: pytest.CaptureFixture
) -> None:
    from studio.cli import main

    bundle = tmp_path / "model.zip"
    code = main(
        ["train", "--data", str(extreme_csv), "--target", "y", "--task", "regression", "--epochs", "3"]
        + ["--bundle-out", str(bundle), "--quiet"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Traceback" not in out.err + out.out
    with zipfile.ZipFile(bundle) as zf:
        info = strict_json(zf.read("artifacts/studio_model.json").decode())
    assert all(v is not None for v in info["metrics"].values())

    (run,) = tracking.list_runs()
    profile = strict_json(
        Path(
            tracking.client().download_artifacts(run.run_id, tracking.PROFILE_ARTIFACT, str(tmp_path))
        ).read_text()
    )
    assert {w["column"] for w in profile["warnings"] if w["code"] == "out_of_range"} == {"x1", "y"}


def test_a_job_on_extreme_values_succeeds_and_its_page_has_no_error(
    studio_home: Path, extreme_csv: Path
) -> None:
    from streamlit.testing.v1 import AppTest

    from studio.data import add_csv

    dataset = add_csv(extreme_csv)
    spec = RunSpec.from_dict(
        {
            "name": "extreme",
            "task": "regression",
            "data": {"dataset_id": dataset.id, "target": "y"},
            "training": {"epochs": 2, "batch_size": 16},
        }
    )
    done = run_in_process(spec)
    assert done.state == jobs.SUCCEEDED, done.reason
    assert "Traceback" not in done.log_path.read_text() if done.log_path.exists() else True

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "runs.py"), default_timeout=60)
    at.query_params["job"] = done.id
    at.run()
    assert not at.exception and not at.error
    assert any("Training finished" in s.value for s in at.success)
