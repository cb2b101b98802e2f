"""The sweep: {table, pictures} × {sane settings, settings that diverge}, each trained through the real
path (a job as the Train page submits it, run by the worker's own code), and for each the job state, the
MLflow run status, the Runs page's words and the presence of a model file must all tell the same story.
A fifth run diverges late enough to keep its best epoch: it must say so everywhere too."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs, tracking
from studio.core import quality
from studio.core.spec import RunSpec
from tests.images.conftest import make_zip
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process
from tests.training.conftest import make_table

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "runs.py")

TABLE = {"task": "regression", "target": "amount", "training": {"batch_size": 16}}
PICTURES = {
    "task": "image_classification",
    "target": "label",
    "architecture": {"name": "small_cnn", "params": {"width": 8, "blocks": 2}},
    "training": {"batch_size": 8},
}
CASES = {
    # name: (data, settings, expected job state, expects a note)
    "table-sane": ("table", {"epochs": 3}, jobs.SUCCEEDED, False),
    "table-diverges": (
        "table",
        {"epochs": 5, "optimizer": {"name": "sgd", "learning_rate": 10.0}},
        jobs.FAILED,
        False,
    ),
    "pictures-sane": ("pictures", {"epochs": 2}, jobs.SUCCEEDED, False),
    "pictures-diverge": (
        "pictures",
        {"epochs": 6, "optimizer": {"name": "sgd", "learning_rate": 10.0, "weight_decay": 1.0}},
        jobs.FAILED,
        False,
    ),
    "table-diverges-late-keeps-best": (
        "table",
        {
            "epochs": 12,
            "optimizer": {"name": "sgd", "learning_rate": 0.15},
            "scheduler": {"name": "onecycle"},
        },
        jobs.SUCCEEDED,
        True,
    ),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """One studio home for the whole sweep (the data sets are added once)."""
    root = tmp_path_factory.mktemp("sweep")
    patch = pytest.MonkeyPatch()
    patch.setenv("STUDIO_HOME", str(root / "home"))
    patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{root}/mlruns"))
    patch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    from studio.data import add_csv, add_image_zip

    make_table().to_csv(root / "table.csv", index=False)
    datasets = {
        "table": add_csv(root / "table.csv").id,
        "pictures": add_image_zip(make_zip(root / "shapes.zip", per_class=12, top="shapes")).id,
    }
    yield datasets
    patch.undo()


def submit_and_run(dataset_id: str, data: str, name: str, settings: dict) -> jobs.Job:
    """What the Train page does (a queued job with the spec), then what the scheduler's worker does."""
    base = TABLE if data == "table" else PICTURES
    spec = RunSpec.from_dict(
        {
            "name": name,
            "task": base["task"],
            "data": {"dataset_id": dataset_id, "target": base["target"]},
            **({"architecture": base["architecture"]} if "architecture" in base else {}),
            "training": {**base["training"], "epochs": settings["epochs"]},
            "early_stopping": {"patience": 50},
            **{key: value for key, value in settings.items() if key != "epochs"},
        }
    )
    return run_in_process(spec)


def run_page(job_id: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["job"] = job_id
    return at.run()


@pytest.mark.parametrize("case", list(CASES))
def test_job_mlflow_page_and_model_file_agree(home: dict[str, str], case: str) -> None:
    data, settings, expected_state, expects_note = CASES[case]
    job = submit_and_run(home[data], data, case, settings)
    assert job.state == expected_state, job.reason

    run = tracking.get_run(job.mlflow_run_id)
    artifacts = {a.path for a in tracking.client().list_artifacts(job.mlflow_run_id)}
    at = run_page(job.id)
    assert not at.exception
    downloads = [b for b in at.get("download_button") if b.proto.id and "download-model" in b.proto.id]
    listed = AppTest.from_file(PAGE, default_timeout=60).run()
    row = next(m.value for m in listed.markdown if f"**{case}**" in m.value)

    if job.state == jobs.FAILED:
        assert job.reason.startswith("The training diverged at epoch ")
        assert run.status == "FAILED" and run.tags[tracking.TAG_FAILURE] == job.reason
        assert [e.value for e in at.error] == [job.reason]
        assert not at.success and not at.warning
        assert any("Lower the learning rate (to the value suggested above" in m.value for m in at.markdown)
        assert job.bundle_path is None and not (job.log_path.parent / "model.zip").exists()
        assert "bundle" not in artifacts and tracking.TAG_BUNDLE not in run.tags
        assert not downloads and not at.metric  # no model, no scores to trust
        assert "Failed" in row
    elif expects_note:
        assert (
            job.reason and job.reason.startswith("Stopped at epoch ") and "kept the best epoch" in job.reason
        )
        assert run.status == "FINISHED" and run.tags[tracking.TAG_NOTE] == job.reason
        assert tracking.TAG_FAILURE not in run.tags
        (warning,) = at.warning
        assert warning.value.startswith(job.reason)
        assert not at.success and not at.error
        assert not any("Training finished" in m.value for m in [*at.markdown, *at.info, *at.caption])
        assert Path(job.bundle_path).is_file() and "bundle" in artifacts
        assert downloads and at.metric
        assert "Finished with an earlier epoch" in row
    else:
        assert job.reason is None
        assert run.status == "FINISHED" and tracking.TAG_NOTE not in run.tags
        assert tracking.TAG_FAILURE not in run.tags
        verdict = quality.verdict(job.outcome)  # the scores against a trivial guess's, on the same rows
        assert verdict is not None and run.tags[tracking.TAG_VERDICT] == verdict.title
        if verdict.worrying:  # a tiny run may be no better than a guess: then the page opens by saying so
            assert at.warning[0].value.startswith("Training finished, but the model is ")
            assert not at.success
        else:
            assert [s.value for s in at.success][0].startswith("Training finished.")
            assert not at.warning and not at.error
        assert Path(job.bundle_path).is_file() and "bundle" in artifacts
        assert downloads and at.metric
        assert "Finished" in row and "earlier epoch" not in row
