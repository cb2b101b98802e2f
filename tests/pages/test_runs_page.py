"""The Runs page with real jobs: a tiny model trained by the real worker code (in this process), a job
that fails, a queued job, and a job that looks like it is running."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.core.spec import RunSpec
from studio.jobs import store, worker

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "runs.py")


def tiny_dataset(folder: Path, rows: int = 80) -> str:
    from studio.data import add_csv

    rng = random.Random(1)
    lines = ["a,b,colour,y"]
    for _ in range(rows):
        a, b = rng.random(), rng.random()
        lines.append(f"{a:.3f},{b:.3f},{rng.choice(['red', 'blue'])},{'yes' if a + b > 1 else 'no'}")
    path = folder / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    return add_csv(path).id


def spec(dataset_id: str, name: str, target: str = "y", **sections: dict) -> RunSpec:
    training = {"epochs": 2, "batch_size": 16, **sections.pop("training", {})}
    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": target},
            "training": training,
            **sections,
        }
    )


def run_in_process(run_spec: RunSpec) -> jobs.Job:
    """Queue a job and run it with the worker's own code here (no scheduler, no subprocess)."""
    job = jobs.submit_job(run_spec, start_scheduler=False)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        worker.run_job(job.id)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return jobs.get_job(job.id)


def page(job_id: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if job_id:
        at.query_params["job"] = job_id
    return at.run()


def chart_traces(at: AppTest) -> list[list[str]]:
    return [[t.get("name") for t in json.loads(c.proto.spec)["data"]] for c in at.get("plotly_chart")]


@pytest.fixture
def home(studio_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    studio_home.mkdir(parents=True, exist_ok=True)
    yield studio_home
    jobs.stop_scheduler(timeout=5)


def test_list_and_finished_run_show_scores_curves_model_and_settings(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id = tiny_dataset(tmp_path)
    done = run_in_process(spec(dataset_id, "first model"))
    assert done.state == jobs.SUCCEEDED, done.reason

    at = page()
    assert not at.exception
    assert at.title[0].value == "Runs"
    assert any("first model" in m.value and "Finished" in m.value for m in at.markdown)
    assert at.get("progress")[0].proto.value == 100
    at.button(key=f"open-{done.id}").click().run()
    assert at.query_params["job"] == done.id

    monkeypatch.setenv("STUDIO_MLFLOW_UI_URL", "http://127.0.0.1:5999")
    at = page(done.id)
    assert not at.exception and not at.error
    assert at.title[0].value == "first model"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"].endswith("%") and "Loss" in metrics
    assert chart_traces(at) == [["training", "validation", "training", "validation"]]
    download = at.download_button(key="download-model")
    assert download.label.startswith("Download the model")
    assert "first-model-model.zip" in at.code[0].value and "mlflow.pyfunc.load_model" in at.code[0].value
    (link,) = [b for b in at.get("link_button") if b.proto.label == "Open this run in MLflow"]
    assert (
        link.proto.url
        == f"http://127.0.0.1:5999/#/experiments/{done.experiment_id}/runs/{done.mlflow_run_id}"
        "?workflowType=machine_learning"
    )
    settings = at.dataframe[0].value
    assert {"Learning rate", "Epochs (at most)"} <= set(settings["Setting"])
    assert json.loads(at.json[0].proto.body)["name"] == "first model"

    at.button(key="back-to-runs").click().run()
    assert "job" not in at.query_params and at.title[0].value == "Runs"


def test_failed_run_shows_its_reason_and_what_to_try(home: Path, tmp_path: Path) -> None:
    dataset_id = tiny_dataset(tmp_path)
    failed = run_in_process(spec(dataset_id, "wrong target", target="price"))
    assert failed.state == jobs.FAILED

    at = page(failed.id)

    assert not at.exception
    assert "price" in at.error[0].value and at.error[0].value == failed.reason
    assert any("What to try" in m.value for m in at.markdown)
    assert not at.get("plotly_chart")  # nothing was trained: no empty chart
    assert not [b for b in at.download_button if b.key == "download-model"]


def test_queued_run_says_it_waits_and_can_be_removed(home: Path) -> None:
    queued = jobs.submit_job(spec("some-data", "in the queue"), start_scheduler=False)

    at = page()
    assert any("waiting for a free device" in p.proto.text for p in at.get("progress"))
    at = page(queued.id)
    assert not at.exception
    assert "waiting for a free device" in at.info[0].value
    at.button(key="remove-queued").click().run()

    assert not at.exception
    assert "removed from the queue" in at.success[0].value and "job" not in at.query_params
    assert jobs.list_jobs() == []
    assert any("No runs yet" in i.value for i in at.info)


def test_running_run_shows_progress_and_can_be_stopped(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "ensure_scheduler", lambda: None)  # no scheduler to settle this worker-less job
    job = jobs.submit_job(spec("some-data", "busy"), start_scheduler=False)
    assert store.claim_job(job.id, "cpu:0")
    store.set_progress(
        job.id, epoch=1, max_epochs=2, step=3, total_steps=6, fraction=0.5, eta_seconds=12, metrics={}
    )

    at = page(job.id)
    assert not at.exception
    assert at.get("progress")[0].proto.value == 50
    assert "about 12 s left" in at.get("progress")[0].proto.text
    at.button(key="cancel-run").click().run()

    assert not at.exception
    assert jobs.get_job(job.id).cancel_requested
    assert "Stopping this run" in at.info[0].value
    # The worker ends it; the next refresh shows the final state.
    store.finish_job(job.id, jobs.CANCELLED, reason="Cancelled on request.")
    at.run()
    assert "cancelled" in at.info[0].value and not [b for b in at.button if b.key == "cancel-run"]


def test_unknown_job_id_is_a_plain_error(home: Path) -> None:
    at = page("job-nope")

    assert not at.exception
    assert "There is no job 'job-nope'" in at.error[0].value


def test_a_trial_the_search_stopped_says_so_not_cancelled(home: Path, tmp_path: Path) -> None:
    from studio.app import runs_view as rv

    job = store.insert_job(spec(tiny_dataset(tmp_path), "trial"), search_id="search-x", trial_number=3)
    assert store.claim_job(job.id, "cpu")
    reason = "Stopped early by the search at epoch 5: its validation accuracy was behind the other trials'."
    store.finish_job(job.id, store.CANCELLED, reason=reason)
    store.set_trial_state(job.id, "pruned")
    pruned = store.get_job(job.id)
    assert "Stopped early by the search" in rv.status_label(pruned) and "Cancelled" not in rv.status_label(
        pruned
    )
    assert rv.state_message(pruned).startswith(reason)
    at = page(job.id)
    assert not at.exception
    shown = [e.value for e in (*at.markdown, *at.caption, *at.info)]
    assert any("Stopped early by the search" in text for text in shown), shown


def test_a_finished_trial_says_it_was_not_tested_and_the_chosen_one_shows_its_test(
    home: Path, tmp_path: Path
) -> None:
    job = store.insert_job(spec(tiny_dataset(tmp_path), "trial"), search_id="search-x", trial_number=1)
    assert store.claim_job(job.id, "cpu")
    store.finish_job(job.id, store.SUCCEEDED)

    at = page(job.id)
    assert not at.exception
    shown = " ".join(e.value for e in (*at.markdown, *at.caption, *at.info))
    assert "so it was not tested" in shown and "Check the test scores" not in shown
    assert "This run has no test scores." not in shown

    store.set_test_metrics(job.id, {"test/accuracy": 0.9, "test/loss": 0.3})  # the search chose it
    at = page(job.id)
    assert not at.exception
    shown = " ".join(e.value for e in (*at.markdown, *at.caption, *at.info, *at.success))
    assert "not tested" not in shown and "Check the test scores" in shown
    assert ("Accuracy", "90.0%") in [(m.label, m.value) for m in at.metric]
