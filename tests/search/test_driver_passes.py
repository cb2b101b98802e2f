"""The driver's passes: one connection counts time and reads what changed; a pass where no trial
changed does nothing more; no trial starts that the budget left cannot fit. Real SQLite, no training."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.jobs import store
from studio.search import control, records
from studio.search.driver import Driver
from tests.search.helpers import tiny_dataset, tiny_spec


def _trial(search_id: str, spec, number: int, seconds: float | None = None) -> store.Job:
    job = store.insert_job(
        spec, token=f"{search_id}:trial:{number}", search_id=search_id, trial_number=number
    )
    if seconds is not None:
        assert store.claim_job(job.id, "cpu")
        store.finish_job(job.id, store.SUCCEEDED)
        with store.connect() as conn:
            conn.execute(
                "UPDATE jobs SET started_at = 100.0, ended_at = ? WHERE id = ?", (100.0 + seconds, job.id)
            )
        store.set_trial_state(job.id, "complete")
    return store.get_job(job.id)


def test_a_pass_counts_time_and_its_digest_changes_only_when_a_trial_does(
    studio_home: Path, tmp_path: Path
) -> None:
    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=60, start_driver=False)

    first, empty = records.account(search.id, 1.5, 0.01, 0.005)
    assert empty == "" and first.used_seconds == 1.5 and first.overhead_seconds == 0.01
    job = _trial(search.id, spec, 0)
    _, queued = records.account(search.id, 0.5, 0.0, 0.0)
    assert queued != empty
    assert store.claim_job(job.id, "cpu")
    _, running = records.account(search.id, 0.5, 0.0, 0.0)
    assert running != queued
    store.set_progress(
        job.id, epoch=1, max_epochs=2, step=1, total_steps=2, fraction=0.5, eta_seconds=1, metrics={}
    )
    again, progressed = records.account(search.id, 0.5, 0.0, 0.0)
    assert progressed == running  # progress alone is nothing for the driver to act on
    assert again.used_seconds == 3.0
    store.request_cancel(job.id)
    _, stopping = records.account(search.id, 0.0, 0.0, 0.0)
    assert stopping != running


def test_no_trial_starts_when_the_budget_left_is_shorter_than_a_trial_takes(
    studio_home: Path, tmp_path: Path
) -> None:
    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    jobs = [_trial(search.id, spec, 0, 20.0), _trial(search.id, spec, 1, 30.0)]
    driver = Driver(search.id)
    records.update(search.id, used_seconds=90.0)
    assert (
        driver._too_little_time(records.get_search(search.id), jobs) is None
    )  # two trials: too few to judge

    jobs.append(_trial(search.id, spec, 2, 40.0))
    assert driver._too_little_time(records.get_search(search.id), jobs) == (
        "It stopped with 10 s of its budget left: too little for another trial (a trial has taken about 30 s)."
    )
    records.update(search.id, used_seconds=65.0)
    assert driver._too_little_time(records.get_search(search.id), jobs) is None

    # the driver ends the search there, with that reason, instead of queueing a trial it would cut short
    records.update(search.id, used_seconds=90.0)
    driver.search = records.get_search(search.id)
    for job in jobs:  # already settled by an earlier pass
        driver.settled.add(job.id)
    assert driver.tick() == records.FINISHED
    ended = records.get_search(search.id)
    assert ended.reason.startswith("It stopped with 10 s of its budget left")
    assert len(store.search_jobs(search.id)) == 3


def test_a_tie_with_your_own_settings_keeps_them(studio_home: Path, tmp_path: Path) -> None:
    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    mine, other, better = (_trial(search.id, spec, n, 10.0) for n in (0, 1, 2))
    driver = Driver(search.id)

    driver._record_result(other, 1, 0.9)  # trial 1 finished first
    assert records.get_search(search.id).best_job_id == other.id
    driver._record_result(mine, 0, 0.9)  # your settings tie with it: they are kept
    assert records.get_search(search.id).best_job_id == mine.id
    assert records.get_search(search.id).default_value == 0.9
    driver._record_result(better, 2, 0.9)  # another tie does not replace them either
    assert records.get_search(search.id).best_job_id == mine.id
    driver._record_result(better, 2, 0.95)  # only a strictly better score does
    assert records.get_search(search.id).best_job_id == better.id


def test_a_trial_replaces_your_settings_only_when_it_beats_them_beyond_chance_on_the_folds(
    studio_home: Path, tmp_path: Path
) -> None:
    import optuna

    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    driver = Driver(search.id)
    folds = {
        0: [1.0, 1.0, 0.963, 1.0, 0.963],  # your settings: two rows wrong in five folds of 27
        1: [1.0, 1.0, 1.0, 1.0, 1.0],  # right on those two rows: higher, but by luck as often as not
        2: [1.0, 1.0, 1.0, 1.0, 1.0],
    }
    jobs = {n: _trial(search.id, spec, n, 10.0) for n in folds}
    for scores in folds.values():
        value = sum(scores) / len(scores)
        driver.study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"cv_scores": scores}))

    driver._record_result(jobs[1], 1, 1.0)  # before your settings ended, the higher score is taken
    assert records.get_search(search.id).best_job_id == jobs[1].id
    driver._record_result(jobs[0], 0, sum(folds[0]) / 5)  # then yours: trial 1 is not better beyond chance
    assert records.get_search(search.id).best_job_id == jobs[0].id
    driver._record_result(jobs[2], 2, 1.0)
    assert records.get_search(search.id).best_job_id == jobs[0].id

    # in another search, a gain of a row on every fold is beyond chance
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    driver = Driver(search.id)
    mine, other = (_trial(search.id, spec, n, 10.0) for n in (0, 1))
    for scores in ([0.963] * 5, [1.0] * 5):
        driver.study.add_trial(optuna.trial.create_trial(value=scores[0], user_attrs={"cv_scores": scores}))
    driver._record_result(mine, 0, 0.963)
    driver._record_result(other, 1, 1.0)
    assert records.get_search(search.id).best_job_id == other.id


def test_beats_beyond_chance_is_a_one_sided_paired_test() -> None:
    from studio.search.driver import beats_beyond_chance

    ref = [0.9, 0.9, 0.9, 0.9, 0.9]
    assert beats_beyond_chance([0.95] * 5, ref, "max") is True  # the same gain on every fold
    assert beats_beyond_chance([0.9] * 5, ref, "max") is False  # no gain
    assert beats_beyond_chance([1.0, 0.9, 0.9, 0.9, 0.9], ref, "max") is False  # one fold: t = 1
    assert beats_beyond_chance([1.0, 1.0, 0.95, 0.95, 1.0], ref, "max") is True  # t = 6.5
    assert beats_beyond_chance([0.3, 0.35, 0.3, 0.3, 0.3], [0.4] * 5, "min") is True  # a lower loss
    assert beats_beyond_chance([0.5] * 5, [0.4] * 5, "min") is False
    assert beats_beyond_chance(None, ref, "max") is None  # no folds: cannot be told
    assert beats_beyond_chance([1.0, None, 1.0, 1.0, 1.0], ref, "max") is None
    assert beats_beyond_chance([1.0, 1.0], ref, "max") is None
    # the best of many trials: the 5% is shared among them (Bonferroni)
    assert beats_beyond_chance([1.0, 1.0, 0.95, 0.95, 1.0], ref, "max", tried=10) is True  # 6.5 > 4.6
    assert beats_beyond_chance([1.0, 1.0, 0.95, 0.95, 1.0], ref, "max", tried=60) is False  # 6.5 < 7.5
    assert beats_beyond_chance([0.95] * 5, ref, "max", tried=60) is True  # still: the same gain on each
    three_rows = [0.963, 0.963, 0.963, 0.926, 0.926]  # wine, seed 2: 3 rows more over five folds of 27
    assert beats_beyond_chance(three_rows, [0.926] * 5, "max") is True  # t = 2.45 > 2.13
    assert beats_beyond_chance(three_rows, [0.926] * 5, "max", tried=64) is False


def test_t_threshold_is_students_t_quantile_at_the_shared_rate() -> None:
    from studio.search.driver import t_threshold

    assert t_threshold(4, 1) == pytest.approx(2.132, abs=1e-3)
    assert t_threshold(1, 1) == pytest.approx(6.314, abs=1e-3)
    assert t_threshold(4, 10) == pytest.approx(4.604, abs=1e-3)  # the 99.5% quantile
    assert t_threshold(4, 60) > t_threshold(4, 10) > t_threshold(4, 1)
    stats = pytest.importorskip("scipy.stats")  # (installed with scikit-learn)
    for degrees in range(1, 12):
        for tried in (1, 3, 10, 60, 500):
            assert t_threshold(degrees, tried) == pytest.approx(stats.t.ppf(1 - 0.05 / tried, degrees))


def test_the_chosen_trial_is_checked_again_with_the_final_number_of_trials(
    studio_home: Path, tmp_path: Path
) -> None:
    import optuna

    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    driver = Driver(search.id)
    mine = [0.9] * 5
    lucky = [1.0, 1.0, 0.95, 0.95, 1.0]  # t = 6.5: beyond chance as the best of a few, not of 60
    steady = [0.93] * 5  # a smaller gain, the same on every fold
    scored = {0: mine, 1: lucky, 2: steady}
    jobs = {n: _trial(search.id, spec, n, 10.0) for n in scored}
    for scores in scored.values():
        driver.study.add_trial(
            optuna.trial.create_trial(value=sum(scores) / 5, user_attrs={"cv_scores": scores})
        )
    for number, scores in scored.items():
        driver._record_result(jobs[number], number, sum(scores) / 5)
    assert records.get_search(search.id).best_job_id == jobs[1].id  # the best of 2: it passes

    driver._recheck_choice()  # nothing changed: the choice stands
    assert records.get_search(search.id).best_job_id == jobs[1].id

    for number in range(3, 63):  # 60 more trials, no better than yours
        _trial(search.id, spec, number, 10.0)
        driver.study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"cv_scores": mine}))
    driver._recheck_choice()  # now trial 1 is the best of 62: the steady one takes its place
    search = records.get_search(search.id)
    assert search.best_job_id == jobs[2].id and search.best_value == pytest.approx(0.93)

    # with no trial beyond chance, your settings are chosen again
    other = control.start_search(spec, budget_seconds=100, start_driver=False)
    driver = Driver(other.id)
    jobs = {n: _trial(other.id, spec, n, 10.0) for n in range(62)}
    for number in range(62):
        scores = lucky if number == 1 else mine
        driver.study.add_trial(
            optuna.trial.create_trial(value=sum(scores) / 5, user_attrs={"cv_scores": scores})
        )
    driver._record_result(jobs[0], 0, 0.9)
    records.update(other.id, best_job_id=jobs[1].id, best_value=0.98)  # chosen while few had ended
    driver._recheck_choice()
    other = records.get_search(other.id)
    assert other.best_job_id == jobs[0].id and other.best_value == pytest.approx(0.9)


def test_trial_scores_reach_the_search_run_in_batches(
    studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio import tracking
    from studio.search import driver as driver_module

    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    first, second, third = (_trial(search.id, spec, n, 10.0) for n in (0, 1, 2))
    driver = Driver(search.id)
    driver._open_parent_run()
    run_id = records.get_search(search.id).parent_run_id
    client = tracking.client()

    driver._record_result(first, 0, 0.8)
    driver._record_result(second, 1, 0.9)
    assert client.get_metric_history(run_id, "search/trial_value") == []  # gathered, not written yet
    monkeypatch.setattr(driver_module, "PARENT_WRITE_SECONDS", 0.0)
    driver._record_result(third, 2, 0.85)  # due: one write for all three
    history = client.get_metric_history(run_id, "search/trial_value")
    assert [(m.step, m.value) for m in history] == [(0, 0.8), (1, 0.9), (2, 0.85)]
    best = client.get_metric_history(run_id, "search/best_value")
    assert [m.value for m in best] == [0.8, 0.9, 0.9]
    assert client.get_run(run_id).data.tags["studio.best_job_id"] == second.id


def test_the_page_says_why_a_higher_score_was_not_taken(studio_home: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from studio.app import search_view as sv

    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    rows = [
        sv.TrialRow(number=n, job_id=f"job-{n}", state="complete", value=v, started=0.0, ended=1.0)
        for n, v in ((0, 0.985), (1, 1.0), (2, 0.97))
    ]
    kept = replace(search, best_job_id="job-0", best_value=0.985, default_value=0.985)
    text = sv.chosen_text(kept, rows)
    assert text.startswith("The search keeps your settings (trial 0), whose validation accuracy")
    assert "Trial 1 scored 1, but did not beat your settings by more than chance" in text
    assert "shared among the 2 trials it was the best of" in text
    taken = replace(search, best_job_id="job-1", best_value=1.0, default_value=0.985)
    assert sv.chosen_text(taken, rows).startswith("Trial 1 has the best validation accuracy")
    assert "(your settings, trial 0: 0.985)" in sv.chosen_text(taken, rows)


def test_an_ended_search_says_in_one_sentence_when_nothing_beat_your_settings(
    studio_home: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from studio.app import search_view as sv

    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, budget_seconds=100, start_driver=False)
    rows = [
        sv.TrialRow(number=0, job_id="job-0", state="complete", value=0.985, started=0.0, ended=1.0),
        sv.TrialRow(number=1, job_id="job-1", state="complete", value=0.97, started=0.0, ended=1.0),
        sv.TrialRow(
            number=2,
            job_id="job-2",
            state="failed",
            value=None,
            started=0.0,
            ended=1.0,
            reason="The training diverged at epoch 1, where the loss became infinite: try 0.001.",
        ),
    ]
    ended = replace(
        search, state=records.FINISHED, best_job_id="job-0", best_value=0.985, default_value=0.985
    )
    assert sv.chosen_text(ended, rows) == (
        "Nothing beat your own settings: none of the 2 other trials scored a better validation accuracy, "
        "averaged over 5 cross-validation folds (higher is better) than trial 0 (0.985), so the search keeps "
        "your settings."
    )
    higher = [*rows, sv.TrialRow(number=3, job_id="job-3", state="complete", value=1.0, started=0, ended=1)]
    assert sv.chosen_text(ended, higher).startswith(
        "Nothing beat your own settings by more than chance. The search keeps your settings (trial 0)"
    )
    table = sv.trials_frame(ended, rows)
    assert list(table["Why it stopped"]) == ["", "", rows[2].reason]


def test_a_trial_that_ends_while_another_is_told_is_told_before_the_search_ends(
    studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trials ending 0.1 s apart (seen on Ray): the pass told the study about the first, read the
    jobs again, found none active and ended the search, the second trial never told."""
    spec = tiny_spec(tiny_dataset(tmp_path))
    search = control.start_search(spec, max_trials=2, start_driver=False)
    driver = Driver(search.id)
    jobs = []
    for number, score in ((0, 0.8), (1, 0.9)):
        trial = driver.study.ask()
        trial.report(score, step=1)
        job = _trial(search.id, spec, number)
        assert store.claim_job(job.id, f"cpu:{number}")
        jobs.append(job)
    store.finish_job(jobs[0].id, store.SUCCEEDED)

    settle = driver._settle

    def the_second_ends_meanwhile(seen: list[store.Job]) -> bool:
        acted = settle(seen)
        if store.get_job(jobs[1].id).is_active:
            store.finish_job(jobs[1].id, store.SUCCEEDED)
        return acted

    monkeypatch.setattr(driver, "_settle", the_second_ends_meanwhile)
    ended = driver.tick()
    assert ended == records.FINISHED
    assert [store.get_job(job.id).trial_state for job in jobs] == ["complete", "complete"]
    assert [t.state.name for t in driver.study.get_trials()] == ["COMPLETE", "COMPLETE"]
    assert records.get_search(search.id).best_job_id == jobs[1].id
