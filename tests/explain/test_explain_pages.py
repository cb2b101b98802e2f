"""The run page's "What drives the predictions" and the Predict page's "Why this prediction?": the
page only queues a job (no work in the page's process), follows it, and draws its result."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.jobs import worker
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process, spec, tiny_dataset

PAGES = Path(__file__).resolve().parents[2] / "pages"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("explain-pages")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{root}/mlruns"))
        patch.setattr(jobs, "ensure_scheduler", lambda *a, **k: None)  # the test runs the jobs itself
        done = run_in_process(spec(tiny_dataset(root, rows=120), "<b>colour</b> model", training={"epochs": 4}))
        assert done.state == jobs.SUCCEEDED, done.reason
        yield done


def run_queued(parent: jobs.Job, action: str) -> jobs.Job:
    (job,) = [j for j in jobs.list_jobs(actions=True) if j.parent_id == parent.id and j.action == action
              and j.state == jobs.QUEUED]
    previous = signal.getsignal(signal.SIGTERM)
    try:
        worker.run_job(job.id)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return jobs.get_job(job.id)


def chart(at: AppTest, key: str) -> dict:
    (found,) = [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id]
    return json.loads(found.proto.spec)


def test_the_run_page_queues_an_explanation_and_draws_its_bar_chart(trained: jobs.Job) -> None:
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=60)
    at.query_params["job"] = trained.id
    at.run()
    assert not at.exception
    assert "What drives the predictions" in [h.value for h in at.subheader]
    at.button(key="explain-model").click().run()
    assert not at.exception
    queued = jobs.latest_action(trained.id, "explain")
    assert queued is not None and queued.state == jobs.QUEUED  # the page queued it and did nothing else
    assert not [b for b in at.button if b.key == "explain-model"]  # no second job while one waits
    done = run_queued(trained, "explain")
    assert done.state == jobs.SUCCEEDED, done.reason
    at.run()
    assert not at.exception
    bars = chart(at, "importance-chart")["data"][0]
    assert set(bars["y"]) == {"a", "b", "colour"} and len(bars["error_x"]["array"]) == 3
    assert any("drive" in m.value or "matters" in m.value for m in at.markdown)
    assert [b for b in at.button if b.key == "explain-model"][0].label == "Explain again"


def test_the_predict_page_explains_one_row_as_a_waterfall(trained: jobs.Job) -> None:
    at = AppTest.from_file(str(PAGES / "predict.py"), default_timeout=60)
    at.query_params["job"] = trained.id
    at.run()
    rows = b"a,b,colour\n0.9,0.8,red\n0.1,0.05,blue\n"
    at.file_uploader(key="predict-rows-upload").upload("rows.csv", rows, "text/csv").run()
    at.button(key="predict-run").click().run()
    assert not at.exception and not at.error
    at.number_input(key="why-row").set_value(2).run()
    at.button(key="why-run").click().run()
    assert not at.exception
    queued = jobs.latest_action(trained.id, "explain_row")
    assert {k: queued.options["row"][k] for k in ("a", "b", "colour")} == {"a": 0.1, "b": 0.05, "colour": "blue"}
    done = run_queued(trained, "explain_row")
    assert done.state == jobs.SUCCEEDED, done.reason
    at.run()
    assert not at.exception
    fall = chart(at, "row-waterfall")["data"][0]
    assert fall["y"][0] == "average row" and fall["y"][-1] == "this row"
    assert set(fall["y"][1:-1]) == {"a", "b", "colour"}
    result = jobs.read_action_result(done)
    assert sum(fall["x"][1:-1]) == pytest.approx(result["prediction"] - result["baseline"], abs=0.01)


def test_the_run_page_makes_a_small_version_and_shows_both_side_by_side(trained: jobs.Job) -> None:
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=60)
    at.query_params["job"] = trained.id
    at.run()
    assert not at.exception
    assert "A small version for small devices" in [h.value for h in at.subheader]
    assert at.number_input(key="small-tolerance").value == pytest.approx(0.01)
    assert at.selectbox(key="small-prune").value == 0.0  # no pruning unless asked
    at.button(key="make-small").click().run()
    queued = jobs.latest_action(trained.id, "compress")
    assert queued.state == jobs.QUEUED and queued.options == {"tolerance": pytest.approx(0.01)}
    done = run_queued(trained, "compress")
    at.run()
    assert not at.exception
    assert done.state == jobs.SUCCEEDED or "refused" in done.reason, done.reason
    (table,) = [d.value for d in at.dataframe if list(d.value.columns) == ["", "original", "small"]]
    assert list(table[""]) == ["file size", "CPU time per row", "test accuracy"]
    result = jobs.read_action_result(done)
    if done.state == jobs.SUCCEEDED:
        labels = [b.label for b in at.get("download_button")]
        assert "Download the small version (bundle .zip)" in labels
        assert "Download the small network alone (.onnx)" in labels
        assert any(m.value.startswith("Small version:") for m in at.markdown)
    else:  # refused: the reason with its numbers, and nothing to download
        assert result["refused"] and any("refused" in w.value for w in at.warning)
    # pruning is a choice: the job is asked for it, and the page says what it zeroed
    at.selectbox(key="small-prune").set_value(0.5).run()
    at.button(key="make-small").click().run()
    pruned = jobs.latest_action(trained.id, "compress")
    assert pruned.id != done.id and pruned.options == {"tolerance": pytest.approx(0.01), "prune": 0.5}
    pruned = run_queued(trained, "compress")
    at.run()
    assert not at.exception
    assert jobs.read_action_result(pruned)["pruning"]["fraction"] == 0.5
    assert any("of the weights zeroed (magnitude pruning)" in c.value for c in at.caption)
