"""A data kind added from the tests alone (``toy_kind``: its own task, network, DataModule and
bundle) trains end to end through the CLI: the engine, the spec and the CLI look the kind up and
never need an edit for it."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.processes import stop_everything_under
from tests.studio_cli import run_studio

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "tests.modalities.toy_kind"


def run_cli(*args: str, plugin: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("STUDIO_MODALITIES", None)
    if plugin:
        env["STUDIO_MODALITIES"] = PLUGIN
    return run_studio(*args, env=env)


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
        info = json.loads(zf.read("artifacts/studio_model.json"))
    model = info["toy"]
    assert info["kind"] == "toy" and model["columns"] == ["a", "b", "c"]
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
    assert (
        "task must be one of 'classification', 'regression', 'text_classification', 'text_regression' or 'llm_finetune' (got 'toy_sum')"
        in done.stderr
    )


@pytest.fixture
def registries_restored():
    """The toy kind registers itself in this process (the pages run in it); afterwards the studio's
    registries hold again what they held before, so later tests see only the studio's own kinds."""
    from studio import modalities
    from studio.core import spec, tasks

    tasks.load_plugins()  # the studio's own plugin kinds (llm) registered before the snapshot, so they stay
    for kind in list(modalities._BUILTIN):  # and every built-in kind's modality (registered on first use:
        modalities.modality(kind)  # one first used during the test would be lost with the snapshot)
    saved = [
        (registry, dict(registry)) for registry in (tasks._TASKS, modalities.MODALITIES, spec.ARCHITECTURES)
    ]
    loaded = set(tasks._plugins_loaded)
    yield
    for registry, before in saved:
        registry.clear()
        registry.update(before)
    tasks._plugins_loaded.clear()
    tasks._plugins_loaded.update(loaded)


def test_a_kind_registered_from_the_tests_goes_from_the_train_form_to_predict(
    studio_home, tmp_path, sums_csv, monkeypatch, registries_restored
):
    """The toy kind through the pages, as a user goes: the Train form offers its task and network and
    submits a real job (the scheduler's worker loads the kind from STUDIO_MODALITIES), the run page
    shows the kind's own section, and the Predict page predicts rows with its bundle."""
    import time

    from streamlit.testing.v1 import AppTest

    from studio import jobs
    from studio.app import forms
    from studio.data import add_data_file

    monkeypatch.setenv("STUDIO_MODALITIES", PLUGIN)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    add_data_file(sums_csv)
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
        at.switch_page("pages/train.py").run()
        at.selectbox(key="train_target").set_value("y").run()
        at.selectbox(key="train_task").set_value("toy_sum").run()
        assert at.selectbox(key="train_architecture").value == "toy_linear"
        at.number_input(key=forms.field_key("training.epochs", "toy_sum")).set_value(30).run()
        at.number_input(key=forms.field_key("optimizer.learning_rate", "toy_sum")).set_value(0.05).run()
        assert not at.exception, [e.value for e in at.exception]
        at.button(key="train_submit").click().run()
        (job,) = jobs.list_jobs()
        assert job.spec.task == "toy_sum" and job.spec.training.epochs == 30
        deadline = time.monotonic() + 240
        while (job := jobs.get_job(job.id)).is_active and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.state == jobs.SUCCEEDED, f"{job.state}: {job.reason}"

        runs = AppTest.from_file(str(REPO / "pages" / "runs.py"), default_timeout=60)
        runs.query_params["job"] = job.id
        runs.run()
        assert not runs.exception, [e.value for e in runs.exception]
        learnt = next(m.value for m in runs.markdown if m.value.startswith("y ≈"))
        weights = dict(reversed(term.split("·")) for term in learnt.split()[2:5])
        assert abs(float(weights["a"]) - 3) < 0.2 and abs(float(weights["b"]) + 2) < 0.2, learnt

        predict = AppTest.from_file(str(REPO / "pages" / "predict.py"), default_timeout=90)
        predict.query_params["job"] = job.id
        predict.run()
        rows = b"a,b,c\n1,0,0\n0,1,0\n2,1,5\n"
        predict.file_uploader(key="predict-rows-upload").upload("rows.csv", rows, "text/csv").run()
        predict.button(key="predict-run").click().run()
        assert not predict.exception and not predict.error, [e.value for e in predict.error]
        result = predict.dataframe[0].value
        np.testing.assert_allclose(result["predicted_y"], [3, -2, 4], atol=0.3)
    finally:
        stop_everything_under(studio_home)  # (only this home's: not the test process's other children)
