"""The whole studio in a real browser: upload a CSV, train, watch the live curves, download the model,
predict with it outside the studio, and stop ``studio serve`` with Ctrl-C.

Screenshots of every page go to ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.python_m_workers]  # (the whole path, as `make run` starts it)

EPOCHS = 12
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CURVE_POINTS = ".js-plotly-plot .scatterlayer g.trace.scatter"


def write_table(path: Path, rows: int = 240) -> Path:
    """A small classification table: is a person 'tall' or 'short', from height, weight and a colour."""
    rng = random.Random(1)
    lines = ["height,weight,colour,label"]
    for _ in range(rows):
        height, weight, colour = rng.gauss(170, 10), rng.gauss(70, 12), rng.choice(["red", "green", "blue"])
        label = "tall" if height + (5 if colour == "red" else 0) > 172 else "short"
        lines.append(f"{height:.1f},{weight:.1f},{colour},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the script run has finished and nothing is loading."""
    page.wait_for_selector(APP_IDLE, timeout=timeout)
    page.wait_for_selector('[data-testid="stSpinner"]', state="detached", timeout=timeout)
    page.wait_for_timeout(300)


def shoot(page, folder: Path, name: str) -> Path:
    settle(page)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(page, title: str) -> None:
    """Click a page in the sidebar menu (keeps the browser session, unlike typing its address)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.wait_for_url(re.compile(rf"/{title.lower()}(\?|$)"), timeout=30_000)
    page.get_by_role("heading", name=re.compile(title)).first.wait_for(timeout=60_000)
    settle(page)


def add_file(page, path: Path) -> None:
    """On the Data page, upload a file and press "Add this file" (unfolding "Add a data set" when it is
    folded, as it is once a data set exists)."""
    page.get_by_role("heading", name="Data").first.wait_for()
    settle(page)
    uploader = page.locator(".st-key-data_upload")
    if not uploader.is_visible():
        page.locator("summary").filter(has_text="Add a data set").click()
        uploader.wait_for()
    uploader.locator("input[type=file]").set_input_files(str(path))
    add = page.locator(".st-key-data_add_upload button")
    page.wait_for_function("b => !b.disabled", arg=add.element_handle())
    add.click()


def train_to_the_end(page, timeout_ms: float = 300_000):
    """Press Train, follow to the run page and wait for the model's download button: the finished job."""
    from studio import jobs

    page.locator(".st-key-train_submit button").click()
    page.wait_for_url(re.compile(r"/runs\?job="), timeout=30_000)
    job_id = page.url.split("job=", 1)[1].split("&", 1)[0]
    page.locator(".st-key-download-model button").wait_for(timeout=timeout_ms)
    finished = jobs.get_job(job_id)
    assert finished.state == jobs.SUCCEEDED, finished.reason
    return finished


def time_to_first_point(job, seen_after: float) -> str:
    """Where the wait went: queued → worker started → first training step logged in MLflow."""
    from studio import jobs, tracking

    job = jobs.get_job(job.id)
    logged = tracking.client().get_metric_history(job.mlflow_run_id, "train/loss")
    if not (job.started_at and logged):
        return "(no breakdown: the job has no start time or no logged loss yet)"
    first_logged = min(m.timestamp for m in logged) / 1000
    return (
        f"  job queued → worker started: {job.started_at - job.created_at:.1f} s; "
        f"worker started → first loss logged: {first_logged - job.started_at:.1f} s; "
        f"the rest ({seen_after - (first_logged - job.created_at):.1f} s) is the page refresh and drawing"
    )


# The bundle must predict without the studio: a fresh interpreter in another folder, isolated from
# PYTHONPATH and the current folder, with only mlflow, torch and pandas (what python_snippet shows).
PREDICT_OUTSIDE = textwrap.dedent(
    """
    import importlib.util, sys, zipfile
    import mlflow
    import pandas as pd

    assert importlib.util.find_spec("studio") is None, "the studio must not be importable here"
    zipfile.ZipFile(sys.argv[1]).extractall("model")
    model = mlflow.pyfunc.load_model("model")
    predictions = model.predict(pd.read_csv(sys.argv[2]))
    predictions.to_csv("predictions.csv", index=False)
    print(len(predictions), list(predictions.columns))
    """
)


def test_upload_train_watch_download_predict_and_stop(
    full_studio, page, screenshots: Path, tmp_path: Path
) -> None:
    from studio import jobs
    from studio.data import list_datasets

    studio = full_studio

    table = write_table(tmp_path / "people.csv")
    studio.wait_for("is ready", timeout=120)
    page.goto(studio.url)

    # Data: upload the CSV (the wine sample was added on the first start).
    add_file(page, table)
    page.get_by_text("Added 'people'").wait_for()
    assert {info.name for info in list_datasets()} == {"people", "wine"}
    page.get_by_role("heading", name="people").first.wait_for()
    shoot(page, screenshots, "1-data")

    # Train: the uploaded table and its suggested target are picked; fewer epochs, then Train.
    open_page(page, "Train")
    epochs = page.get_by_role("spinbutton", name="Epochs (at most)", exact=True)
    epochs.fill(str(EPOCHS))
    epochs.press("Enter")
    settle(page)
    shoot(page, screenshots, "2-train")
    page.locator(".st-key-train_submit button").click()
    pressed = time.monotonic()

    # The run page opens and draws the live curves while the job trains.
    page.wait_for_url(re.compile(r"/runs\?job="), timeout=30_000)
    page.locator(CURVE_POINTS).first.wait_for(timeout=180_000)
    first_point = time.monotonic() - pressed
    page.screenshot(path=str(screenshots / "4-run-live.png"), full_page=True)
    job_id = page.url.split("job=", 1)[1].split("&", 1)[0]
    job = jobs.get_job(job_id)
    assert job.dataset_id == next(info.id for info in list_datasets() if info.name == "people")
    assert job.spec.training.epochs == EPOCHS and job.spec.data.target == "label"
    print(f"\nTime from pressing Train to the first point on the live chart: {first_point:.1f} s")
    print(time_to_first_point(job, first_point))

    # A second run on the same table (queued behind the first), so Compare has two runs to show.
    second = jobs.submit_job(
        job.spec.with_changes(
            **{"name": "e2e second run", "training.epochs": 4, "optimizer.learning_rate": 0.01}
        )
    )

    download = page.locator(".st-key-download-model button")
    download.wait_for(timeout=300_000)
    finished = jobs.get_job(job_id)
    assert finished.state == jobs.SUCCEEDED, finished.reason
    settle(page)
    assert page.locator(CURVE_POINTS).count() >= 2  # training and validation curves
    shoot(page, screenshots, "4-run")

    with page.expect_download() as downloaded:
        download.click()
    bundle = tmp_path / "outside" / "model.zip"
    bundle.parent.mkdir()
    downloaded.value.save_as(bundle)
    assert zipfile.is_zipfile(bundle)

    rows = tmp_path / "outside" / "rows.csv"
    rows.write_text("\n".join(table.read_text().splitlines()[:21]) + "\n")
    outside = subprocess.run(
        [sys.executable, "-I", "-c", PREDICT_OUTSIDE, bundle.name, rows.name],
        cwd=bundle.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert outside.returncode == 0, outside.stderr[-3000:]
    predicted = (bundle.parent / "predictions.csv").read_text().splitlines()
    assert len(predicted) == 21 and "predicted_label" in predicted[0], predicted[:2]
    assert {line.split(",")[predicted[0].split(",").index("predicted_label")] for line in predicted[1:]} <= {
        "tall",
        "short",
    }

    # Runs list, then Compare once the second run has finished too.
    assert jobs.wait_for_job(second.id, timeout=300).state == jobs.SUCCEEDED
    page.locator(".st-key-back-to-runs button").click()  # from the run page back to the list
    page.get_by_role("heading", name="Runs").first.wait_for()
    page.get_by_text("e2e second run").wait_for()
    shoot(page, screenshots, "3-runs")
    open_page(page, "Compare")
    page.locator(".js-plotly-plot").first.wait_for()
    shoot(page, screenshots, "5-compare")

    # Predict in the studio: the newest model, rows uploaded as a CSV.
    open_page(page, "Predict")
    page.locator(".st-key-predict-rows-upload input[type=file]").set_input_files(str(rows))
    page.locator(".st-key-predict-run button").click()
    page.get_by_role("heading", name="Predictions").wait_for(timeout=120_000)
    shoot(page, screenshots, "6-predict")

    # The MLflow UI came up on the same store, and the studio's links open its model-training view
    # (MLflow 3 opens an experiment in its GenAI view otherwise: traces and a "Detect Issues" pop-up).
    studio.wait_for("MLflow UI ready at", timeout=120)
    check_mlflow_links(page, studio, job_id, screenshots)
    page.close()

    # Ctrl-C stops serve and everything it started.
    children = list(studio.children)
    assert any("mlflow" in " ".join(p.cmdline()) for p in children)
    assert studio.stop() == 0, studio.text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert "Stopped." in studio.text()


def check_mlflow_links(page, studio, job_id: str, screenshots: Path) -> None:
    """Follow the run page's and the sidebar's MLflow links: they open MLflow's model-training view
    (its side menu lists Runs and Models; the GenAI view lists Overview, Judges, Evaluation runs)."""
    from studio import jobs

    run = jobs.get_job(job_id)
    page.goto(f"{studio.url}/runs?job={job_id}")
    run_link = page.get_by_role("link", name="Open this run in MLflow")
    run_link.wait_for()
    home_url = page.get_by_role("link", name="Open MLflow").get_attribute("href")
    page.goto(run_link.get_attribute("href"))
    page.get_by_text(run.name).first.wait_for()
    page.screenshot(path=str(screenshots / "7-mlflow-run.png"))  # (not shoot(): no Streamlit here)
    assert_model_training_view(page)

    page.goto(home_url)
    page.get_by_role("link", name=f"studio/{run.dataset_id}").last.wait_for()
    page.screenshot(path=str(screenshots / "8-mlflow-experiments.png"))
    assert_model_training_view(page)


def assert_model_training_view(page) -> None:
    menu = page.locator("a").evaluate_all("links => links.map(a => a.textContent.trim())")
    assert "Evaluation runs" not in menu and "Judges" not in menu, menu
    assert page.get_by_text("Detect Issues").count() == 0
