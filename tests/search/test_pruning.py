"""A pruned trial: its worker reports each epoch's score to its Optuna trial, stops within an epoch of
the search pruning it, and ends as pruned (not failed) in the job store, MLflow and the study."""

from __future__ import annotations

from pathlib import Path

from tests.search.conftest import wait_until
from tests.search.helpers import tiny_dataset, tiny_spec


def test_a_trial_behind_the_others_is_pruned_and_counted_as_pruned(search_home: Path, tmp_path: Path) -> None:
    import optuna

    from studio import jobs, tracking
    from studio.jobs import store
    from studio.search.control import start_search
    from studio.search.driver import Driver
    from studio.search.study import PRUNE_AFTER_TRIALS, PRUNE_WARMUP_EPOCHS, create_study

    dataset_id = tiny_dataset(tmp_path)
    base = tiny_spec(dataset_id, epochs=40, early_stopping={"enabled": False})
    search = start_search(base, max_trials=10, metric="val/accuracy", start_driver=False)
    study = create_study(search.id, "max", search.seed)
    # Earlier trials that no real run can match: every epoch scored 2 (accuracy is at most 1).
    for _ in range(PRUNE_AFTER_TRIALS):
        study.add_trial(
            optuna.trial.create_trial(value=2.0, intermediate_values={e: 2.0 for e in range(1, 41)})
        )
    trial = study.ask()
    job = store.insert_job(
        base.with_changes(name="tiny · trial 4"), search_id=search.id, trial_number=trial.number
    )
    jobs.ensure_scheduler()

    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=120)
    assert ended.state == jobs.CANCELLED, f"{ended.reason}\n{ended.log_path.read_text()[-3000:]}"
    assert ended.trial_state == "pruned"
    assert ended.reason.startswith(f"Stopped early by the search at epoch {PRUNE_WARMUP_EPOCHS}:")
    assert "validation accuracy" in ended.reason
    assert ended.epoch <= PRUNE_WARMUP_EPOCHS + 1  # stopped within an epoch of the decision
    reported = study.trials[trial.number].intermediate_values
    assert sorted(reported) == [PRUNE_WARMUP_EPOCHS]  # reported from the epoch pruning may begin at
    run = tracking.client().get_run(ended.mlflow_run_id)
    assert run.info.status == "KILLED" and run.data.tags["studio.trial_state"] == "pruned"
    assert run.data.tags["studio.search_id"] == search.id

    driver = Driver(search.id)
    driver._settle(store.search_jobs(search.id))  # the driver's pass tells the study
    assert driver.study.trials[trial.number].state == optuna.trial.TrialState.PRUNED
    settled = jobs.get_job(job.id)
    assert settled.checkpoint is None and not settled.can_resume  # pruned for good
    assert settled.trial_state == "pruned"


def test_a_trial_pruned_on_its_last_epoch_ends_as_pruned_not_as_complete(
    search_home: Path, tmp_path: Path
) -> None:
    """The reports go from a thread of their own; the answer to the last epoch's report comes after
    training has ended. A "prune" then still ends the trial as pruned (KILLED in MLflow, PRUNED in the
    study), not as a completed trial without the score its search compares (e.g. its folds' mean)."""
    import optuna

    from studio import jobs, tracking
    from studio.jobs import store
    from studio.search.control import start_search
    from studio.search.driver import Driver
    from studio.search.study import PRUNE_AFTER_TRIALS, PRUNE_WARMUP_EPOCHS, create_study

    dataset_id = tiny_dataset(tmp_path)
    base = tiny_spec(dataset_id, epochs=PRUNE_WARMUP_EPOCHS, early_stopping={"enabled": False})
    search = start_search(base, max_trials=10, metric="val/accuracy", start_driver=False)
    study = create_study(search.id, "max", search.seed)
    for _ in range(PRUNE_AFTER_TRIALS):
        study.add_trial(
            optuna.trial.create_trial(
                value=2.0, intermediate_values={e: 2.0 for e in range(1, PRUNE_WARMUP_EPOCHS + 1)}
            )
        )
    trial = study.ask()
    job = store.insert_job(
        base.with_changes(name="tiny · last"), search_id=search.id, trial_number=trial.number
    )
    jobs.ensure_scheduler()

    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=120)
    assert ended.state == jobs.CANCELLED, (
        f"{ended.state}: {ended.reason}\n{ended.log_path.read_text()[-3000:]}"
    )
    assert ended.trial_state == "pruned"
    assert ended.reason.startswith(f"Stopped early by the search at epoch {PRUNE_WARMUP_EPOCHS}:")
    assert sorted(study.trials[trial.number].intermediate_values) == [PRUNE_WARMUP_EPOCHS]
    run = tracking.client().get_run(ended.mlflow_run_id)
    assert run.info.status == "KILLED" and run.data.tags["studio.trial_state"] == "pruned"

    driver = Driver(search.id)
    driver._settle(store.search_jobs(search.id))
    assert driver.study.trials[trial.number].state == optuna.trial.TrialState.PRUNED
    assert jobs.get_job(job.id).trial_state == "pruned"
