"""A search whose trials train on a real local Ray head: each trial runs the same worker and hooks as a
local job (``python -m studio.cli.worker --ray``), so it reports its score to the search's Optuna study
(in a database the node reaches, ``STUDIO_SEARCH_STORAGE``), files its run under the search's MLflow run
and is judged on validation rows only; without such a database the trial is refused in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs.jobhelpers import tiny_csv, wait_until

pytestmark = pytest.mark.ray


def _spec(dataset_id: str):
    from studio.core.spec import RunSpec

    return RunSpec.from_dict(
        {
            "name": "ray search",
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "y", "val_fraction": 0.45, "test_fraction": 0.15},
            "training": {"epochs": 2, "batch_size": 16},
            "early_stopping": {"enabled": False},
        }
    )


def test_a_search_s_trials_on_ray_report_to_its_study(
    on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from studio import jobs, tracking
    from studio.data import add_csv
    from studio.jobs.store import search_jobs
    from studio.search import records
    from studio.search.control import start_search
    from studio.search.study import load_study

    monkeypatch.setenv("STUDIO_SEARCH_STORAGE", f"sqlite:///{tmp_path}/studies.db")
    dataset = add_csv(tiny_csv(tmp_path, rows=80))
    search = start_search(_spec(dataset.id), max_trials=2, metric="val/accuracy", seed=3)
    done = wait_until(
        lambda: (s := records.get_search(search.id)).state != records.RUNNING and s, timeout=420, poll=1.0
    )
    trials = search_jobs(search.id)
    logs = "\n".join(f"{job.id} {job.state}: {job.reason}" for job in trials)
    assert done.state == records.FINISHED, f"{done.reason}\n{logs}"
    assert [job.trial_number for job in trials] == [0, 1]
    assert all(job.state == jobs.SUCCEEDED and job.trial_state == "complete" for job in trials), logs

    # the node reported each trial's score at its last epoch; the driver completed the trials with it
    study = load_study(search.id)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == [2]
        assert trial.value == trial.intermediate_values[2] and 0.0 <= trial.value <= 1.0

    client = tracking.client()
    for job in trials:
        run = client.get_run(job.mlflow_run_id)
        assert run.data.tags["studio.executor"] == "ray"
        assert run.data.tags["mlflow.parentRunId"] == done.parent_run_id  # from the study, on the node
        assert run.data.tags["studio.search_id"] == search.id
    # judged on validation only: the test rows were used once, for the chosen trial, after the search
    tested = [job.id for job in search_jobs(search.id) if job.test_metrics]
    assert tested == [done.best_job_id]


def test_a_trial_on_ray_without_a_study_the_nodes_reach_is_refused_in_plain_words(
    on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio import jobs
    from studio.data import add_csv
    from studio.jobs import store

    monkeypatch.delenv("STUDIO_SEARCH_STORAGE", raising=False)
    dataset = add_csv(tiny_csv(tmp_path, rows=80))
    job = store.insert_job(_spec(dataset.id), search_id="search-x", trial_number=0)
    jobs.ensure_scheduler()
    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=120, poll=0.5)
    assert ended.state == jobs.FAILED
    assert "set STUDIO_SEARCH_STORAGE to a database URL" in ended.reason
