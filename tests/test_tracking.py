"""MLflow conventions against a real store in a temporary folder."""

from __future__ import annotations

from studio import tracking
from studio.core.spec import RunSpec


def _open_tracking_together(barrier, errors) -> None:  # runs in a forked child
    barrier.wait()
    try:
        tracking.client().search_experiments()
    except Exception as err:  # noqa: BLE001 - the test reports what the child saw
        errors.put(f"{type(err).__name__}: {err}")


def test_new_store_is_created_once_when_processes_race(tmp_path, monkeypatch):
    """Four processes open one new store at the same moment (forked from this one, which has imported
    MLflow already: the race is in creating the store, not in importing)."""
    import multiprocessing

    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (in this process, before the forks)
    import mlflow.tracking  # noqa: F401

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    ctx = multiprocessing.get_context("fork")
    errors, barrier = ctx.Queue(), ctx.Barrier(4)
    children = [ctx.Process(target=_open_tracking_together, args=(barrier, errors)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    seen = []
    while not errors.empty():
        seen.append(errors.get())
    assert seen == [] and [child.exitcode for child in children] == [0, 0, 0, 0]


def test_runs_are_grouped_per_data_set_with_spec_params_and_tags(studio_home):
    spec = RunSpec.from_dict({"task": "regression", "data": {"dataset_id": "houses-1", "target": "price"}})
    run_id, experiment_id = tracking.start_run(spec, job_id="job-1")
    other_id, other_experiment = tracking.start_run(
        spec.with_changes(**{"data.dataset_id": "cars-2"}), job_id=None
    )
    assert experiment_id != other_experiment
    assert tracking.client().get_experiment(experiment_id).name == "studio/houses-1"
    artifact_uri = tracking.client().get_experiment(experiment_id).artifact_location
    assert artifact_uri.startswith("file://") and "mlruns/artifacts" in artifact_uri

    buffer = tracking.MetricBuffer(run_id)
    buffer.add({"train/loss": 1.0}, step=1)
    buffer.flush()
    buffer.add({"train/loss": 0.5, "val/r2": 0.3}, step=2)
    buffer.close()
    tracking.end_run(run_id, "FAILED", "the data ran out")

    run = tracking.get_run(run_id)
    assert run.status == "FAILED"
    assert run.tags[tracking.TAG_FAILURE] == "the data ran out"
    assert run.tags[tracking.TAG_JOB] == "job-1"
    assert run.params["optimizer.name"] == "adamw"
    assert tracking.metric_history(run_id, ["train/loss"]) == {"train/loss": [(1, 1.0), (2, 0.5)]}
    assert [r.run_id for r in tracking.list_runs("houses-1")] == [run_id]
    assert {r.run_id for r in tracking.list_runs()} == {run_id, other_id}
    assert tracking.list_runs("unknown") == []


def test_mlflow_ui_links_open_the_model_training_view():
    view = "workflowType=machine_learning"
    assert (
        tracking.mlflow_ui_run_url("http://h:5000/", "3", "abc")
        == f"http://h:5000/#/experiments/3/runs/abc?{view}"
    )
    assert tracking.mlflow_ui_home_url("http://h:5000/") == f"http://h:5000/#/experiments?{view}"
    url = tracking.mlflow_ui_compare_url("http://h:5000", "3", ["a", "b"])
    assert url.startswith("http://h:5000/#/compare-runs?runs=") and "%22a%22" in url and "experiments=" in url
    assert url.endswith(view)


def test_studio_experiments_are_model_training_experiments(studio_home):
    from mlflow.tracking import MlflowClient

    experiment_id = tracking.ensure_experiment("houses-1")
    mlflow_client = MlflowClient(tracking.settings.tracking_uri())
    assert (
        mlflow_client.get_experiment(experiment_id).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )
    # An experiment an older studio made without the tag gets it the next time a run starts there.
    old = mlflow_client.create_experiment(tracking.experiment_name("old-1"))
    assert tracking.ensure_experiment("old-1") == old
    assert mlflow_client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
