"""A text run on the ``ray`` executor (a real local Ray head, a real MLflow server): a bag of words
trains on the Ray node from a table of reviews whose label a keyword decides, its metrics land in MLflow,
and the bundle that comes back predicts raw text."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import jobs, tracking
from tests.jobs.jobhelpers import wait_until
from tests.text.test_text_training import reviews

pytestmark = pytest.mark.ray


def test_a_bag_of_words_text_run_trains_on_ray_and_its_bundle_predicts(on_ray, tmp_path: Path) -> None:
    from studio.bundle import load_bundle
    from studio.core.spec import RunSpec
    from studio.data import add_data_file

    csv = tmp_path / "reviews.csv"
    reviews(400, seed=1).to_csv(csv, index=False)
    dataset = add_data_file(csv)
    spec = RunSpec.from_dict(
        {
            "name": "text on ray",
            "task": "text_classification",
            "data": {"dataset_id": dataset.id, "target": "label"},
            "training": {"epochs": 12, "batch_size": 32},
        }
    )
    job = jobs.submit_job(spec)
    done = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=300, poll=0.25)
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()}"

    ray_jobs = [j for j in on_ray_jobs(on_ray) if (j.metadata or {}).get("studio_job") == job.id]
    assert [str(j.status.value) for j in ray_jobs] == ["SUCCEEDED"]
    run = tracking.client().get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["studio.executor"] == "ray"
    assert run.data.tags[tracking.TAG_KIND] == "text"
    assert run.data.tags[tracking.TAG_ARCH] == "bag_of_words"
    # a keyword decides 80 % of the rows, the price the rest: a guess gets about half
    assert run.data.metrics["test/accuracy"] > 0.8, run.data.metrics
    assert run.data.metrics["test/accuracy"] == pytest.approx(done.test_metrics["test/accuracy"])

    with load_bundle(done.bundle_path) as bundle:
        assert bundle.kind == "text"
        out = bundle.predict(
            [
                {"review": "i love this phone, great screen", "price": 50.0},
                {"review": "awful delivery and a broken box", "price": 50.0},
            ]
        )
    assert list(out["predicted_label"]) == ["pos", "neg"], out


def on_ray_jobs(head) -> list:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.address).list_jobs()
