"""The search driver: ``python -m studio.search.driver SEARCH_ID`` runs one search to its end.

Every half second it

1. counts the time since its last pass against the budget (time while no driver runs is not counted),
2. settles trials whose job ended: a finished job is told to Optuna as complete with its score (the
   validation score of the model the run kept, the last one its worker reported), a pruned one as
   pruned, a failed one as failed; an interrupted one (its worker died) is resumed from its last saved
   epoch,
3. when the budget (or the number of trials) is used up, stops the trials still training, the same way
   a pruned trial stops (within a training step), so no search runs over its budget by more than the
   epoch its trials were in; and ends when none is left,
4. otherwise asks Optuna for a new trial whenever the device slots have room and none of its trials is
   waiting, and queues it as an ordinary job (its own MLflow run, a child of the search's parent run),
   unless the budget left is shorter than a trial takes (the median of those that ran to their end):
   such a trial would only be cut short, so the search ends when its running trials do.

A pass where no trial was made, started, ended or asked to stop, and nothing was asked of the search,
ends after its one query (time is counted in the same connection), so a search waiting on long trials
costs almost nothing. When the search ends, the chosen trial's model is tested on the test rows: the
only time the search uses them.

The first trial is the spec's own settings, so the search also measures what a plain run would have
done (the page's reference line) and never ends worse than it on validation; a trial only replaces
those settings when it scores strictly better (a tie keeps them: with a few dozen validation rows, many
trials tie, and picking among them by their validation loss chose worse models on the test rows, e.g.
wine 25 of 27 against the default's 27 of 27) and, on a cross-validated table, better by more than
chance on the same folds (:func:`beats_beyond_chance`, its 5% shared among the trials scored, and
checked again with their final number when the search ends). Everything it needs is
stored (the search's row, the study, the jobs), so a driver started again after a crash or a restart
takes up where the last one stopped; one lock per search keeps it to one driver.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import replace
from typing import Any

from studio.core.errors import StudioError
from studio.jobs import store
from studio.search import records
from studio.search.control import driver_lock, train_rows
from studio.search.pruning import TAG_SEARCH, TAG_TRIAL_STATE
from studio.search.space import starting_point, suggest, trial_spec
from studio.search.study import set_trial_context

log = logging.getLogger("studio.search.driver")

POLL_SECONDS = 0.5
MIN_TRIALS_TO_TIME = 3
"""Trials that must have run to their end before the search judges whether another one still fits."""
SCHEDULER_CHECK_SECONDS = 5.0
"""How often a pass with nothing to do still checks that a scheduler runs the trials."""
WRITE_SECONDS = 2.0
"""How much budget time a quiet driver counts before writing it to the search's row."""
PARENT_WRITE_SECONDS = 10.0
"""How often the search's MLflow run gets the trials' scores (one write for all the trials that ended
since: a write per trial was a third of the driver's work on small tables)."""
MAX_RESUMES = 2
"""How often a trial whose worker died is resumed before the search counts it as failed."""
REASON_BUDGET = "Stopped when the search's time budget ran out."
REASON_SEARCH_CANCELLED = "Stopped because the whole search was cancelled."
SETTLE_PASSES = 5
"""At most this many reads of the trials' jobs per pass while each read finds a trial to tell about."""


def slot_count() -> int:
    """How many trials may train at once: the executor's device slots."""
    try:
        from studio.jobs.executors import make_executor

        return max(1, len(make_executor().slots()))
    except Exception:  # noqa: BLE001 - one at a time is always safe
        return 1


class Driver:
    def __init__(self, search_id: str, poll: float = POLL_SECONDS):
        from studio.search.study import create_study

        self.search_id = search_id
        self.poll = poll
        self.search = records.get_search(search_id)
        self.spec = self.search.spec
        self.space = self.search.space
        self.study = create_study(search_id, self.search.direction, self.search.seed)
        self.slots = slot_count()
        self.overhead = self.overhead_cpu = 0.0
        self.testing = (0.0, 0.0)  # wall and CPU seconds testing the chosen model: not bookkeeping
        self.settled: set[str] = set()
        self.idle = False  # the last full pass found nothing to do until a trial or the search changes
        self.scheduler_checked = 0.0  # trial jobs already told to the study by this driver
        self.parent_metrics: list[Any] = []  # for the search's MLflow run, not written yet
        self.parent_tags: dict[str, str] = {}
        self.parent_written = time.monotonic()

    # ---- the loop
    def run(self) -> str:
        started, cpu = time.perf_counter(), time.process_time()  # (imports before this are not counted)
        self._open_parent_run()
        self._forget_trials_without_jobs()
        if not self.study.trials:  # the spec's own settings first
            self.study.enqueue_trial(starting_point(self.space, self.spec, train_rows(self.spec)))
        self.overhead += time.perf_counter() - started
        self.overhead_cpu = time.process_time() - cpu
        log.info("ready in %.1f s (study, MLflow parent run)", self.overhead)
        last = time.monotonic()
        seen: tuple[str, tuple[Any, ...]] | None = None  # what the last full pass found with nothing to do
        pending = [0.0, 0.0, 0.0]  # time used, bookkeeping, its CPU time: not written yet
        while True:
            work, cpu = time.perf_counter(), time.process_time()
            now = time.monotonic()
            used, last = now - last, now
            # This pass's time and the last pass's bookkeeping: written every few seconds, or at once
            # when the last pass did something (the page's time left lags that much at most)
            for i, value in enumerate((used, self.overhead, self.overhead_cpu)):
                pending[i] += value
            self.overhead = self.overhead_cpu = 0.0
            if seen is None or pending[0] >= WRITE_SECONDS:
                self.search, digest = records.account(self.search_id, *pending)
                pending = [0.0, 0.0, 0.0]
            else:
                self.search, digest = records.account(self.search_id)
                self.search = replace(self.search, used_seconds=self.search.used_seconds + pending[0])
            state = (digest, self._search_key(self.search))
            if state == seen and not self._out_of_time(self.search):
                ended = None  # no trial started, ended or was stopped, and nothing was asked: nothing to do
                if time.monotonic() - self.scheduler_checked > SCHEDULER_CHECK_SECONDS:
                    self._keep_scheduler()
            else:
                self.idle = False
                ended = self.tick()
                seen = state if self.idle else None
            # the whole pass is the search's own bookkeeping, except testing the chosen model
            (testing, testing_cpu), self.testing = self.testing, (0.0, 0.0)
            spent = time.perf_counter() - work - testing
            self.overhead, self.overhead_cpu = spent, time.process_time() - cpu - testing_cpu
            if ended:
                records.add_time(
                    self.search_id, pending[0], pending[1] + self.overhead, pending[2] + self.overhead_cpu
                )
                return ended
            time.sleep(max(0.0, self.poll - spent))

    @staticmethod
    def _search_key(search: records.Search) -> tuple[Any, ...]:
        return (search.state, search.cancel_requested, search.budget_seconds, search.max_trials)

    @staticmethod
    def _out_of_time(search: records.Search) -> bool:
        return search.budget_seconds is not None and search.used_seconds >= search.budget_seconds

    def _keep_scheduler(self) -> None:
        """A scheduler that died (or a restarted machine) leaves the trials to nobody: start one."""
        from studio.jobs import ensure_scheduler

        self.scheduler_checked = time.monotonic()
        ensure_scheduler()

    def tick(self) -> str | None:
        """One pass; the search's final state once it has ended."""
        jobs = store.search_jobs(self.search_id)
        for _ in range(SETTLE_PASSES):
            if not self._settle(jobs):
                break  # every trial that has ended is told: what follows may end the search
            # Read again: resuming a trial changes its state, and another trial may have ended since
            # (two trials ending 0.1 s apart: the search ended with the second never told).
            jobs = store.search_jobs(self.search_id)
        else:
            return None  # still settling: the next pass goes on
        active = [job for job in jobs if job.is_active]
        if active:
            self._keep_scheduler()
        search = self.search
        if search.cancel_requested:
            self._stop(active, REASON_SEARCH_CANCELLED)
            if not active:
                return self._finish(records.CANCELLED, "Cancelled on request.")
            return None
        out_of_time = self._out_of_time(search)
        made = len(jobs)
        enough = search.max_trials is not None and made >= search.max_trials
        short = None if out_of_time or enough else self._too_little_time(search, jobs)
        if out_of_time:
            self._stop(active, REASON_BUDGET)
        elif (
            not enough
            and short is None
            and len(active) < self.slots
            and not any(j.state == store.QUEUED for j in active)
        ):
            self._new_trial()
            return None
        if (out_of_time or enough or short) and not active:
            why = "The time budget is used up." if out_of_time else short or f"All {made} trials have run."
            return self._finish(records.FINISHED, why)
        self.idle = not out_of_time  # waiting on the trials: the next pass that sees no change skips
        return None

    def _too_little_time(self, search: records.Search, jobs: list[store.Job]) -> str | None:
        """Why no new trial should start: the budget left is shorter than a trial takes (the median of
        the trials that ran to their end, once three have), so it would only be cut short; None when
        there is time."""
        if search.budget_seconds is None:
            return None
        took = sorted(
            job.ended_at - job.started_at
            for job in jobs
            if job.trial_state == "complete" and job.started_at and job.ended_at
        )
        if len(took) < MIN_TRIALS_TO_TIME:
            return None
        typical = took[len(took) // 2]
        left = search.budget_seconds - search.used_seconds
        if left >= typical:
            return None
        return (
            f"It stopped with {left:.0f} s of its budget left: too little for another trial "
            f"(a trial has taken about {typical:.0f} s)."
        )

    # ---- trials
    def _new_trial(self) -> None:
        from studio.jobs import ensure_scheduler

        trial = self.study.ask()
        values = suggest(trial, self.space, self.spec)
        name = f"{self.spec.name} · trial {trial.number}"
        try:
            spec = trial_spec(self.spec, values, name)
        except StudioError as err:  # a combination the spec refuses: the sampler learns to avoid it
            log.warning("trial %s: %s", trial.number, err)
            self.study.tell(trial, state=_state("FAIL"))
            return
        job = store.insert_job(
            spec,
            token=f"{self.search_id}:trial:{trial.number}",
            search_id=self.search_id,
            trial_number=trial.number,
        )
        trial.set_user_attr("job_id", job.id)
        ensure_scheduler()
        log.info("trial %s: job %s %s", trial.number, job.id, values)

    def _trials_by_number(self) -> dict[int, Any]:
        return {t.number: t for t in self.study.get_trials(deepcopy=False)}

    def _settle(self, jobs: list[store.Job]) -> bool:
        """Tell Optuna how each ended trial went (once), and resume the ones whose worker died; whether
        it did anything."""
        trials, acted = None, False
        for job in jobs:
            if (
                job.is_active
                or job.id in self.settled
                or job.trial_state in ("complete", "failed", "stopped")
            ):
                continue
            trials = trials or self._trials_by_number()
            trial = trials.get(job.trial_number)
            if trial is None:
                continue
            told = trial.state.name != "RUNNING"
            if job.trial_state == "pruned" and job.state != store.INTERRUPTED and told:
                self.settled.add(job.id)
                continue  # told already (by an earlier driver)
            self._settle_one(job, trial)
            if job.state != store.INTERRUPTED:
                self.settled.add(job.id)
            acted = True
        return acted

    def _settle_one(self, job: store.Job, trial: Any) -> None:
        running = trial.state.name == "RUNNING"
        kept = _last_value(trial)
        if job.state == store.SUCCEEDED and kept is not None:
            if running:
                self.study.tell(trial.number, kept)
            store.set_trial_state(job.id, "complete")
            self._tag(job, "complete")
            self._record_result(job, trial.number, kept)
        elif job.state == store.CANCELLED and job.trial_state == "pruned":
            if running:
                self.study.tell(trial.number, state=_state("PRUNED"))
            store.remove_checkpoints(job.id)  # pruned for good: nothing to resume
        elif job.state == store.CANCELLED and job.started_at is None:  # dropped before it trained
            if running:
                self.study.tell(trial.number, state=_state("FAIL"))
            store.set_trial_state(job.id, "stopped")
        elif job.state == store.INTERRUPTED and not self.search.cancel_requested and job.can_resume:
            resumes = int(trial.user_attrs.get("resumes", 0))
            if resumes < MAX_RESUMES:
                self.study._storage.set_trial_user_attr(trial._trial_id, "resumes", resumes + 1)
                from studio.jobs import resume_job

                resume_job(job.id)
                log.info("trial %s: job %s resumed after its worker stopped", trial.number, job.id)
                return
            self._fail(job, trial, running)
        else:
            self._fail(job, trial, running)

    def _fail(self, job: store.Job, trial: Any, running: bool) -> None:
        if running:
            self.study.tell(trial.number, state=_state("FAIL"))
        store.set_trial_state(job.id, "failed")
        store.remove_checkpoints(job.id)
        self._tag(job, "failed")

    def _stop(self, active: list[store.Job], reason: str) -> None:
        """Stop the search's trials that are still going: a waiting one is dropped, a training one stops
        within a step and counts as pruned (its score so far stays in the study)."""
        from studio.jobs import cancel_job

        for job in active:
            if job.cancel_requested:
                continue
            if job.state == store.RUNNING:
                store.set_trial_state(job.id, "pruned")
            store.add_note(job.id, reason)
            with contextlib.suppress(StudioError):  # it ended meanwhile; the next pass settles it
                cancel_job(job.id)
            if job.state == store.RUNNING and job.mlflow_run_id:
                self._tag(job, "pruned")

    # ---- MLflow and the search's record
    def _open_parent_run(self) -> None:
        from studio import tracking

        if self.search.parent_run_id:
            status = tracking.client().get_run(self.search.parent_run_id).info.status
            if status != "RUNNING":  # extended after it ended
                tracking.reopen_run(self.search.parent_run_id)
            return
        run_id, experiment_id = tracking.start_run(
            self.spec,
            job_id=None,
            extra_tags={
                "mlflow.runName": self.search.name,
                tracking.TAG_KIND: "search",
                TAG_SEARCH: self.search_id,
                "studio.search_metric": self.search.metric,
                "studio.search_space": self.search.space_json[:5000],
                "studio.search_budget_seconds": str(self.search.budget_seconds or ""),
                "studio.search_max_trials": str(self.search.max_trials or ""),
            },
        )
        records.update(self.search_id, parent_run_id=run_id, experiment_id=experiment_id)
        self.search = records.get_search(self.search_id)
        set_trial_context(self.study, parent_run_id=run_id)

    def _tag(self, job: store.Job, state: str) -> None:
        if not job.mlflow_run_id:
            return
        try:
            from studio import tracking

            tracking.set_tags(job.mlflow_run_id, {TAG_TRIAL_STATE: state})
        except Exception:  # noqa: BLE001 - the job store is what the pages trust
            log.exception("could not tag run %s", job.mlflow_run_id)

    def _record_result(self, job: store.Job, number: int, value: float) -> None:

        search = records.get_search(self.search_id)
        better = search.best_value is None or (
            value > search.best_value if search.direction == "max" else value < search.best_value
        )
        if search.best_value is not None and value == search.best_value and search.best_job_id:
            incumbent = store.get_job(search.best_job_id).trial_number
            if 0 in (number, incumbent):  # a tie with your own settings keeps them
                better = number == 0
            else:
                better = self._kept_loss(number) < self._kept_loss(incumbent)
        if better and number != 0 and search.default_value is not None:
            better = self._beats_your_settings(number)  # by more than chance, on the same folds
        elif number == 0 and not better and search.best_job_id:  # your settings ended after other trials
            better = not self._beats_your_settings(store.get_job(search.best_job_id).trial_number)
        changes: dict[str, Any] = {}
        if number == 0:
            changes["default_value"] = value
        if better:
            changes.update(best_job_id=job.id, best_value=value)
        if changes:
            records.update(self.search_id, **changes)
        best = value if better else search.best_value
        metrics = {"search/trial_value": value, "search/best_value": best}
        if search.parent_run_id:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.parent_metrics += [Metric(k, float(v), now, number) for k, v in metrics.items()]
            if better:
                self.parent_tags.update(
                    {"studio.best_job_id": job.id, "studio.best_run_id": job.mlflow_run_id or ""}
                )
            if time.monotonic() - self.parent_written >= PARENT_WRITE_SECONDS:
                self._write_parent(search.parent_run_id)

    def _write_parent(self, run_id: str) -> None:
        """Write the trials' scores (and the chosen trial's tags) gathered for the search's MLflow run."""
        from mlflow.entities import RunTag

        from studio import tracking

        metrics, tags = self.parent_metrics, self.parent_tags
        self.parent_metrics, self.parent_tags, self.parent_written = [], {}, time.monotonic()
        if metrics or tags:
            tracking.client().log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])

    def _beats_your_settings(self, number: int) -> bool:
        """Whether trial ``number`` scores better than your settings (trial 0) by more than chance, by
        :func:`beats_beyond_chance` on the cross-validation folds both were scored on (a search without
        folds: whenever its score is higher)."""
        trials = self._trials_by_number()
        mine, other = trials.get(0), trials.get(number)
        if mine is None or other is None:
            return True
        verdict = beats_beyond_chance(
            other.user_attrs.get("cv_scores"),
            mine.user_attrs.get("cv_scores"),
            self.search.direction,
            tried=scored_trials(trials.values()),
        )
        return verdict is not False

    def _recheck_choice(self) -> None:
        """When the search ends, check its chosen trial again against your settings with the final
        number of trials (each scored trial was one more chance of a lucky score, so the test is stricter
        now than when it was chosen). One that no longer passes gives way to the best-scoring trial that
        does, else to your settings."""
        search = records.get_search(self.search_id)
        jobs = {job.trial_number: job for job in store.search_jobs(self.search_id)}
        chosen = store.get_job(search.best_job_id) if search.best_job_id else None
        if chosen is None or chosen.trial_number in (0, None) or 0 not in jobs:
            return
        if search.default_value is None or self._beats_your_settings(chosen.trial_number):
            return
        sign = 1 if search.direction == "max" else -1
        complete = [
            (number, value)
            for number, trial in self._trials_by_number().items()
            if number in jobs
            and jobs[number].trial_state == "complete"
            and (value := _last_value(trial)) is not None
        ]
        complete.sort(key=lambda pair: -sign * pair[1])
        number, value = next(
            ((n, v) for n, v in complete if n == 0 or self._beats_your_settings(n)),
            (0, search.default_value),
        )
        log.info(
            "search %s: trial %s no longer beats your settings beyond chance; choosing trial %s",
            self.search_id,
            chosen.trial_number,
            number,
        )
        records.update(self.search_id, best_job_id=jobs[number].id, best_value=value)

    def _kept_loss(self, number: int) -> float:
        """A tie between two trials' scores (e.g. both right on every validation row) goes to the lower
        validation loss of the kept model, unless one of them is your own settings (trial 0), which a
        tie keeps (see :meth:`_record_result`)."""
        trial = self._trials_by_number().get(number)
        loss = trial.user_attrs.get("kept_loss") if trial is not None else None
        return float(loss) if loss is not None else math.inf

    def _forget_trials_without_jobs(self) -> None:
        """Trials asked for by a driver that died before queueing their job count as failed."""
        numbers = {job.trial_number for job in store.search_jobs(self.search_id)}
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state.name == "RUNNING" and trial.number not in numbers:
                self.study.tell(trial.number, state=_state("FAIL"))

    def _test_chosen(self, search: records.Search) -> str | None:
        """Test the chosen trial's model on the test rows: the only time a search uses them (its trials
        trained without testing). Once per chosen trial: a driver started again after this skips it.
        Returns a sentence for the search's reason when the test could not run."""
        best = store.get_job(search.best_job_id) if search.best_job_id else None
        if best is None or best.test_metrics or not best.bundle_path or not best.mlflow_run_id:
            return None
        started, cpu = time.perf_counter(), time.process_time()
        records.update(self.search_id, reason="Testing the chosen model on the test rows.")
        try:
            from studio.engine.training import evaluate_chosen_model

            tested = evaluate_chosen_model(best.spec, best.bundle_path, best.mlflow_run_id)
        except Exception as err:  # noqa: BLE001 - the search and its model stand without the test
            log.exception("search %s: testing the chosen trial failed", self.search_id)
            return f"Its chosen model could not be tested: {err}"
        finally:
            self.testing = (time.perf_counter() - started, time.process_time() - cpu)
        store.set_test_metrics(best.id, tested.test_metrics, tested.quality)
        log.info(
            "search %s: chosen trial %s tested: %s", self.search_id, best.trial_number, tested.test_metrics
        )
        return None

    def _finish(self, state: str, reason: str) -> str:
        from studio import tracking

        self._recheck_choice()
        search = records.get_search(self.search_id)
        untested = self._test_chosen(search)
        if untested:
            reason = f"{reason} {untested}"
        records.update(self.search_id, state=state, ended_at=time.time(), reason=reason)
        if search.parent_run_id:
            self._write_parent(search.parent_run_id)
            tags = {}
            if search.best_job_id:
                best = store.get_job(search.best_job_id)
                tags.update({"studio.best_job_id": best.id, "studio.best_run_id": best.mlflow_run_id or ""})
                if best.test_metrics:
                    from mlflow.entities import Metric

                    now = int(time.time() * 1000)
                    tracking.client().log_batch(
                        search.parent_run_id,
                        metrics=[Metric(k, float(v), now, 0) for k, v in best.test_metrics.items()],
                    )
                tags["studio.bundle_path"] = best.bundle_path or ""
            tags["studio.search_state"] = state
            tracking.set_tags(search.parent_run_id, tags)
            tracking.end_run(search.parent_run_id, "FINISHED" if state == records.FINISHED else "KILLED")
        log.info("search %s %s: %s", self.search_id, state, reason)
        return state


def _state(name: str) -> Any:
    import optuna

    return getattr(optuna.trial.TrialState, name)


FALSE_CHOICE_RATE = 0.05
"""How often, at most, a search may replace your settings with a trial that is no better than them:
the test's 5% is shared among every trial the chosen one was picked from (Bonferroni)."""


def beats_beyond_chance(scores: Any, reference: Any, direction: str, tried: int = 1) -> bool | None:
    """Whether fold scores ``scores`` are better than ``reference`` (the same folds' scores of another
    setting) by more than chance: a one-sided paired t-test on the per-fold differences, at
    :data:`FALSE_CHOICE_RATE` divided by ``tried``, the number of trials the candidate is the best of.
    ``None`` when it cannot be told (no folds, a fold without a score). A difference the same on every
    fold counts as real; none at all, or a mean difference at or below zero, does not.

    Small tables are scored on five folds of a few dozen rows, where one row is several points: many of
    a search's trials beat your settings by a row or two by luck, and replacing your settings with one
    of them loses on new rows as often as it wins. The best of 60 such trials passes a 5% test far more
    often than 5% of the time, hence the division by ``tried``."""
    if not isinstance(scores, list) or not isinstance(reference, list) or len(scores) != len(reference):
        return None
    pairs = [(a, b) for a, b in zip(scores, reference, strict=True) if a is not None and b is not None]
    if len(pairs) < 2 or len(pairs) != len(scores):
        return None
    gains = [(a - b) if direction == "max" else (b - a) for a, b in pairs]
    mean = sum(gains) / len(gains)
    if mean <= 0:
        return False
    spread = math.sqrt(sum((g - mean) ** 2 for g in gains) / (len(gains) - 1))
    if spread == 0:
        return True
    return mean / (spread / math.sqrt(len(gains))) > t_threshold(len(gains) - 1, max(1, tried))


def t_threshold(degrees: int, tried: int) -> float:
    """The one-sided quantile of Student's t with ``degrees`` degrees of freedom that a chance gain
    exceeds with probability :data:`FALSE_CHOICE_RATE` / ``tried`` (found by bisection on
    :func:`t_upper_tail`; scipy would do it too, but importing ``scipy.stats`` costs the driver about a
    second of its budget)."""
    rate = FALSE_CHOICE_RATE / tried
    low, high = 0.0, 1.0
    while t_upper_tail(high, degrees) > rate:
        low, high = high, high * 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if t_upper_tail(middle, degrees) > rate else (low, middle)
    return high


def t_upper_tail(t: float, degrees: int) -> float:
    """P(T > t) for Student's t with a whole number of degrees of freedom, t >= 0 (the finite series of
    Abramowitz & Stegun 26.7.3 and 26.7.4 for P(|T| <= t))."""
    theta = math.atan(t / math.sqrt(degrees))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if degrees % 2:  # odd
        series, term = 0.0, math.cos(theta)
        for k in range(3, degrees + 1, 2):
            series += term
            term *= cos2 * (k - 1) / k
        inside = 2 / math.pi * (theta + sin * series) if degrees > 1 else 2 * theta / math.pi
    else:
        series, term = 0.0, 1.0
        for k in range(2, degrees + 1, 2):
            series += term
            term *= cos2 * (k - 1) / k
        inside = sin * series
    return (1 - inside) / 2


def scored_trials(trials: Any) -> int:
    """How many trials besides your settings (trial 0) have fold scores: the trials a chosen one was
    the best of (at least 1)."""
    return max(1, sum(1 for t in trials if t.number != 0 and isinstance(t.user_attrs.get("cv_scores"), list)))


def _last_value(trial: Any) -> float | None:
    """The trial's score: the mean over its cross-validation folds (a small table), else the last one its
    worker reported (the kept model's)."""
    if trial.value is not None:
        return float(trial.value)
    if "cv_value" in trial.user_attrs:
        value = trial.user_attrs["cv_value"]
        return float(value) if value is not None and math.isfinite(value) else None
    values = trial.intermediate_values
    if not values:
        return None
    value = float(values[max(values)])
    return value if math.isfinite(value) else None


def run(search_id: str, poll: float = POLL_SECONDS) -> int:
    with driver_lock(search_id) as mine:
        if not mine:
            log.info("search %s already has a driver", search_id)
            return 0
        search = records.get_search(search_id)
        if not search.is_active:
            return 0
        try:
            Driver(search_id, poll).run()
        except BaseException as err:
            log.exception("search %s: the driver stopped", search_id)
            if not isinstance(err, KeyboardInterrupt | SystemExit):
                _fail(search_id, f"The search stopped on an error: {type(err).__name__}: {err}")
            raise
    return 0


def _fail(search_id: str, reason: str) -> None:
    """End a search whose driver broke: failed, its trials stopped (``jobs resume ID --more`` retries)."""
    from studio.jobs import cancel_job

    records.update(search_id, state=records.FAILED, ended_at=time.time(), reason=reason)
    for job in store.search_jobs(search_id):
        if job.is_active:
            with contextlib.suppress(StudioError):
                cancel_job(job.id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.search.driver", description="Run one search.")
    parser.add_argument("search_id")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    from studio.core.settings import keep_mlflow_offline

    keep_mlflow_offline()
    log.info("driver for %s: pid %s", args.search_id, os.getpid())
    return run(args.search_id, args.poll)


if __name__ == "__main__":
    raise SystemExit(main())
