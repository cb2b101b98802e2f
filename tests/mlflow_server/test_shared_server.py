"""Everything against a real shared ``mlflow server`` (SQLite backend, proxied artifacts), plain and with
its basic-auth app: a job trains into it, its curves show on the Runs and Compare pages, its bundle comes
back through the artifact proxy and predicts, and ``serve --mlflow-uri`` links to it instead of starting
a local MLflow UI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs, tracking
from tests.mlflow_server.mlflow_server import ADMIN_PASSWORD, ADMIN_USER, MlflowServer
from tests.pages.test_runs_page import run_in_process, spec, tiny_dataset

PAGES = Path(__file__).resolve().parents[2] / "pages"


def _train_on(server: MlflowServer, tmp_path: Path) -> jobs.Job:
    tracking._client_for.cache_clear()  # a fresh client reads the credentials of this test
    dataset_id = tiny_dataset(tmp_path)
    done = run_in_process(spec(dataset_id, "shared run"))
    assert done.state == jobs.SUCCEEDED, done.reason
    return done


def _check_run_lives_on_the_server(server: MlflowServer, done: jobs.Job, tmp_path: Path) -> None:
    run = tracking.client().get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED"
    # Artifacts go through the server's proxy (mlflow-artifacts:/…) into its artifact folder.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    stored = list(server.artifacts.rglob("model.zip"))
    assert any(done.mlflow_run_id in str(path) for path in stored), stored
    assert not (Path.cwd() / "mlruns").exists() or not any((Path.cwd() / "mlruns").rglob(done.mlflow_run_id))

    curves = tracking.metric_history(done.mlflow_run_id, ["train/loss", "val/loss"])
    assert len(curves["val/loss"]) == 2 and curves["train/loss"]
    assert [r.run_id for r in tracking.list_runs()] == [done.mlflow_run_id]

    bundle = tracking.download_bundle(done.mlflow_run_id, str(tmp_path / "fetched"))
    from studio.bundle import load_bundle

    model = load_bundle(bundle)
    try:
        predicted = model.predict(pd.DataFrame({"a": [0.9, 0.1], "b": [0.8, 0.1], "colour": ["red", "blue"]}))
    finally:
        model.close()
    assert len(predicted) == 2 and set(predicted["predicted_y"]) <= {"yes", "no"}


def _check_pages(done: jobs.Job, server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_MLFLOW_UI_URL", server.url)
    runs = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=60)
    runs.query_params["job"] = done.id
    runs.run()
    assert not runs.exception and not runs.error
    assert len(runs.get("plotly_chart")) >= 1  # the live curves, read from the server
    (link,) = [b for b in runs.get("link_button") if b.proto.label == "Open this run in MLflow"]
    assert link.proto.url.startswith(f"{server.url}/#/experiments/{done.experiment_id}/runs/")

    compare = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60).run()
    assert not compare.exception and not compare.error
    assert done.mlflow_run_id in compare.multiselect[0].value


def test_a_job_trains_into_a_shared_server_and_comes_back_through_its_proxy(
    mlflow_server: MlflowServer, on_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_server(mlflow_server)
    done = _train_on(mlflow_server, tmp_path)
    _check_run_lives_on_the_server(mlflow_server, done, tmp_path)
    _check_pages(done, mlflow_server, monkeypatch)


@pytest.mark.ray  # MLflow's basic-auth app needs flask-wtf, from requirements-cluster.txt
def test_basic_auth_server_needs_and_takes_the_tracking_credentials(
    mlflow_auth_server: MlflowServer, on_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_server(mlflow_auth_server)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    tracking._client_for.cache_clear()
    with pytest.raises(Exception, match="401|nauthori|credentials"):
        tracking.list_runs()

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    done = _train_on(mlflow_auth_server, tmp_path)
    _check_run_lives_on_the_server(mlflow_auth_server, done, tmp_path)
    _check_pages(done, mlflow_auth_server, monkeypatch)
    tracking._client_for.cache_clear()
