"""Fine-tuning a language model on Ray: the job goes through the same worker and hooks as a local one
(the node fetches the data set and the base model from MLflow, reports progress and the held-out prompts'
answers, and sends the adapter bundle to MLflow, which the studio fetches back and answers prompts with)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from studio import jobs, tracking
from tests.cluster.test_ray_executor import _ended, _ray_jobs_of
from tests.llm.test_llm import _spec
from tests.llm.tiny import PAIRS, build_model, write_pairs_csv

pytestmark = pytest.mark.ray


def test_a_lora_job_fine_tunes_on_ray_from_a_base_model_the_node_lacks_and_its_bundle_answers_here(
    on_ray, tmp_path: Path, monkeypatch
) -> None:
    """The studio's machine and the node have different home folders here (the studio's HOME is changed;
    the Ray head keeps its own), so '~/tiny-llama' is a folder on the studio's machine only: the studio
    sends it through MLflow, the node fetches it into its own files, trains from it, and the bundle names
    the studio's folder, where it answers."""
    from studio.bundle.reader import load_bundle, read_bundle_info
    from studio.data import add_data_file
    from studio.modalities.llm import ship

    node_home = Path(os.path.expanduser("~"))  # (the Ray head's HOME, taken before it changes)
    studio_machine = tmp_path / "studio-machine"
    model = build_model(studio_machine / "tiny-llama")
    monkeypatch.setenv("HOME", str(studio_machine))
    assert not (node_home / "tiny-llama").exists()
    dataset = add_data_file(write_pairs_csv(tmp_path / "pairs.csv", repeat=2))
    spec = _spec(dataset.id, "response", Path("~/tiny-llama"), **{"training.epochs": 2, "name": "llm on ray"})
    assert spec.architecture.params["base_model"] == "~/tiny-llama"
    job = jobs.submit_job(spec)
    done = _ended(job.id, timeout=400)
    log = done.log_path.read_text()
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{log[-4000:]}"
    (ray_job,) = _ray_jobs_of(on_ray, job.id)
    assert str(ray_job.status.value) == "SUCCEEDED"

    # The data set and the base model reached the node through MLflow.
    assert f"data set {dataset.id}: fetched from MLflow" in log
    digest = ship.folder_digest(model)
    copy = tmp_path / "node" / "base-models" / digest
    assert "base model ~/tiny-llama: fetched from MLflow" in log and str(copy) in log
    assert ship.folder_digest(copy) == digest and ship.origin_of(copy) == str(model.resolve())

    # Progress, curves and the held-out prompts' answers were logged from the node.
    run = tracking.client().get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["studio.executor"] == "ray"
    assert run.data.tags["studio.llm_base_model"] == str(model.resolve())
    assert done.epoch == 2 and {"test/loss", "test/perplexity", "test/exact_match"} <= set(done.test_metrics)
    assert [m.step for m in tracking.client().get_metric_history(run.info.run_id, "val/perplexity")]
    samples = [a.path for a in tracking.client().list_artifacts(run.info.run_id, "llm")]
    assert "llm/samples.json" in samples

    # The bundle came back beside the job's log, names the studio's folder and answers here, from it.
    assert Path(done.bundle_path).is_file() and Path(done.bundle_path).parent == done.log_path.parent
    assert read_bundle_info(done.bundle_path)["llm"]["base_model"]["path"] == str(model.resolve())
    with load_bundle(done.bundle_path) as bundle:
        answers = bundle.model.predict(pd.DataFrame({"prompt": [p for p, _ in PAIRS[:2]]}))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers["answer"])

    experiment = tracking.client().get_experiment_by_name(ship.EXPERIMENT)
    (sent,) = tracking.client().search_runs([experiment.experiment_id])
    assert sent.data.tags[ship.TAG_DIGEST] == digest
    assert ship.publish_base_model("~/tiny-llama")["run"] == sent.info.run_id  # a next job sends nothing
