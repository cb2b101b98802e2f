"""What a search's trial does inside its job worker: it reports its validation score to its Optuna trial
at the end of every epoch and stops when the search prunes it.

The score reported is the one of the model the run keeps so far: the searched metric at the epoch that
is best by the run's own early-stopping metric (the epoch whose weights are restored, tested and
bundled), so the last report is the trial's result. The reports go from a thread of their own, so
training does not wait on the study; an epoch's answer is awaited before the next epoch is reported. A
pruned trial stops within a training step of the decision, at most one epoch after the epoch it was
judged on (its run is cancelled, its MLflow run KILLED with ``studio.trial_state=pruned``), and the job
says so (``trial_state`` pruned, a note); the search's driver counts it as pruned, never as failed.

The process that runs jobs, here or on a Ray node (:mod:`studio.cli.worker`), hands :func:`job_hooks`
to the job worker, which wraps every job's hooks with it: a job that carries a ``search_id`` gets
:func:`trial_hooks`. What the trial needs of its search comes from its study (the searched metric, the
search's MLflow run), so a Ray node that reaches the study's storage and MLflow reports the same way.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

from studio.core.spec import metric_mode
from studio.search.study import PRUNE_WARMUP_EPOCHS, TRIAL_CONTEXT_ATTR

TAG_SEARCH = "studio.search_id"
TAG_TRIAL = "studio.trial_number"
TAG_TRIAL_STATE = "studio.trial_state"
PARENT_TAG = "mlflow.parentRunId"


def metric_words(metric: str) -> str:
    """``val/accuracy`` → ``validation accuracy``."""
    name = metric.split("/", 1)[-1].replace("_", " ")
    return {"r2": "R²", "f1 macro": "F1 (macro)", "auroc": "AUROC", "mae": "mean absolute error"}.get(
        name, name
    ).join(("validation ", ""))


def pruned_note(epoch: int, metric: str, value: float) -> str:
    return (
        f"Stopped early by the search at epoch {epoch}: its {metric_words(metric)} ({value:.4g}) was behind "
        "the middle of the earlier trials at that epoch."
    )


CV_MAX_ROWS = 10_000
"""Tables up to this many rows score each trial by cross-validation (:func:`cv_folds`)."""
CV_MAX_FOLDS = 5


def cv_folds(spec: Any, n_rows: int) -> int:
    """On how many folds a trial of ``spec`` is scored: its own split's validation rows (1), or, for a
    table of at most :data:`CV_MAX_ROWS` rows, as many blocks of validation rows as its non-test rows
    hold (5 with the default 15% shares, at most :data:`CV_MAX_FOLDS`). On a small table one validation
    split is too few rows to rank a hundred settings by (the breast cancer sample's is 86 rows: one row
    is 1.2 points); the mean over the folds is a steadier score. A fold ensemble ('use all my data') is
    scored on its own fold models' folds, whatever the table's size."""
    from studio.core.spec import fold_blocks
    from studio.modalities import modality_for

    if spec.data.use_all_data:  # a fold ensemble: scored on the folds of its own fold models
        return spec.data.folds
    if n_rows > CV_MAX_ROWS or not getattr(modality_for(spec.task), "folds", False):
        return 1
    return max(1, min(CV_MAX_FOLDS, fold_blocks(spec.data.val_fraction, spec.data.test_fraction)))


def cv_note(folds: int, metric: str, scores: list[float | None]) -> str:
    shown = ", ".join("none" if score is None else f"{score:.4g}" for score in scores)
    return f"Scored on {folds} cross-validation folds: {metric_words(metric)} {shown}."


class KeptScore:
    """The searched metric at the best epoch so far by the run's monitor (strictly better, as the
    ``BestWeights`` callback counts it; NaN never improves)."""

    def __init__(self, metric: str, monitor: str):
        self.metric, self.monitor, self.mode = metric, monitor, metric_mode(monitor)
        self.best: float | None = None
        self.value: float | None = None
        self.loss: float | None = None  # the kept epoch's validation loss: breaks ties between trials

    def update(self, metrics: dict[str, float]) -> float | None:
        score, value = metrics.get(self.monitor), metrics.get(self.metric)
        improved = (
            score is not None
            and score == score  # NaN never improves
            and (self.best is None or (score < self.best if self.mode == "min" else score > self.best))
        )
        if improved:
            self.best = score
            if value is not None and math.isfinite(value):
                self.value = value
                self.loss = metrics.get("val/loss")
        return self.value


_studies: dict[str, Any] = {}
"""The studies this worker reported to, by search: a warm worker runs many trials of one search, and
loading a study reads its whole journal (the journal storage reads only what is new afterwards)."""


def job_hooks(job: Any, hooks: Any) -> Any:
    """The worker's hooks for ``job``: a search's trial's (:func:`trial_hooks`), else ``hooks`` as they are."""
    return trial_hooks(job, hooks) if job.search_id else hooks


def trial_hooks(job: Any, inner: Any) -> Any:
    """``inner`` (the worker's job hooks) plus the trial's reports and pruning."""
    from studio.engine.training import TrainHooks

    class TrialHooks(TrainHooks):
        runs_test = False  # judged on validation only; the search tests the trial it chooses, once

        def __init__(self) -> None:
            self.inner = inner
            self.context: dict[str, Any] = {}  # the search's metric and MLflow run, read with the study
            self.kept: KeptScore | None = None  # made at the first epoch's end, once the study is read
            self.folds_kept: list[dict[str, float]] = []  # a fold ensemble's other models' kept scores
            self.pruned = False
            self.stop_reason: str | None = None  # the worker's reason for a pruned trial
            self.seen_epoch = 0  # the last epoch whose validation scores were seen
            self.reported_epoch = 0  # the last one reported to the study
            self.report_seconds = 0.0  # time training waited for the reports (the search's cost to it)
            self.report_cpu_seconds = 0.0  # processor time the reports took, in their own thread
            self._trial: Any = None
            # The reports go to the study from a thread of their own, one at a time and in order, so
            # training does not wait for the study's file (or, the first time, for loading it); the
            # answer to one epoch's report is awaited before the next epoch is reported, so a pruned
            # trial still stops within an epoch of the epoch it was judged on.
            self._reporter: Any = None
            self._pending: Any = None
            self._lock = threading.Lock()
            self._finished = False  # the job ended: a late answer no longer prunes it

        def __getattr__(self, name: str) -> Any:  # run_id … of the worker's hooks (TrainHooks' own
            # methods are found on the class first: each is passed on below)
            return getattr(self.inner, name)

        @property
        def stop_seen(self) -> bool:
            return self.pruned or self.inner.stop_seen

        def trial(self) -> Any:
            if self._trial is None:
                import optuna

                from studio.search.study import load_study

                study = _studies.get(job.search_id)
                if study is None:  # kept for the search's next trial in this (reused) worker
                    study = _studies[job.search_id] = load_study(job.search_id)
                trial_id = study._storage.get_trial_id_from_study_id_trial_number(
                    study._study_id, job.trial_number
                )
                self.context = dict(study.user_attrs.get(TRIAL_CONTEXT_ATTR) or {})
                self._trial = optuna.trial.Trial(study, trial_id)
            return self._trial

        @property
        def metric(self) -> str:
            if not self.context:
                self.trial()
            return self.context["metric"]

        def _submit(self, work: Any, *args: Any, **kwargs: Any) -> None:
            """Run ``work`` in the report thread after what was sent before it."""
            if self._reporter is None:
                from concurrent.futures import ThreadPoolExecutor

                self._reporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trial-report")
            self._pending = self._reporter.submit(self._timed, work, *args, **kwargs)

        def _timed(self, work: Any, *args: Any, **kwargs: Any) -> None:
            cpu = time.thread_time()
            try:
                work(*args, **kwargs)
            finally:
                self.report_cpu_seconds += time.thread_time() - cpu

        def _wait(self) -> None:
            """Wait for the reports sent so far (an error in one is raised here, in the training thread)."""
            pending, self._pending = self._pending, None
            if pending is not None:
                started = time.perf_counter()
                try:
                    pending.result()
                finally:
                    self.report_seconds += time.perf_counter() - started

        def on_run_started(self, run_id: str, experiment_id: str) -> None:
            self.inner.on_run_started(run_id, experiment_id)
            from studio import tracking

            tracking.set_tags(run_id, {TAG_SEARCH: job.search_id, TAG_TRIAL: str(job.trial_number)})
            # load the study (and import Optuna) while the first epoch trains; then file the run under
            # the search's own MLflow run
            self._submit(self._start, run_id)

        def _start(self, run_id: str) -> None:
            """(In the report thread.)"""
            self.trial()
            if self.context.get("parent_run_id"):
                from studio import tracking

                tracking.set_tags(run_id, {PARENT_TAG: self.context["parent_run_id"]})

        def on_progress(self, progress: Any) -> None:
            self.inner.on_progress(progress)
            epoch = int(progress.metrics.get("epoch", 0))  # the epoch the validation values are from
            if epoch <= self.seen_epoch or self.pruned:
                return
            self.seen_epoch = epoch
            if self.kept is None:
                self._wait()  # the study, loaded while the first epoch trained
                self.kept = KeptScore(self.metric, job.spec.early_stopping.metric)
            value = self.kept.update(progress.metrics)
            if value is None or epoch < PRUNE_WARMUP_EPOCHS:  # (never pruned before: not reported)
                return
            self._wait()  # the answer to the previous epoch's report (its wait is counted there)
            if not self.pruned:
                started = time.perf_counter()
                self.reported_epoch = epoch
                self._submit(self._report, epoch, value, prune=True)
                self.report_seconds += time.perf_counter() - started

        def _report(self, epoch: int, value: float, *, prune: bool) -> None:
            """(In the report thread.)"""
            trial = self.trial()
            trial.report(value, epoch)
            if prune and trial.should_prune():
                with self._lock:  # not once the job has ended some other way
                    if not self._finished:
                        self._prune(epoch, value)

        def report_final(self) -> None:
            """After the run ended well: wait for the reports sent, then report the kept score at the last
            epoch if that epoch was not reported (a run that ended before the pruning warm-up): it is the
            trial's score. A trial whose last report was answered "prune" ends as pruned, as it would
            have had another epoch been left to stop in."""
            self._wait()
            if self.pruned:  # (its run had ended well: it ends as a pruned trial's does)
                from studio.engine.training import TrainingCancelled
                from studio.jobs.runs import end_mlflow_run

                end_mlflow_run(getattr(self.inner, "run_id", None), "KILLED")
                raise TrainingCancelled(self.stop_reason or "Stopped early by the search.")
            if (
                self.kept is not None
                and self.kept.value is not None
                and self.seen_epoch > self.reported_epoch
            ):
                self.reported_epoch = self.seen_epoch
                self._submit(self._report, self.seen_epoch, self.kept.value, prune=False)
                self._wait()

        def _prune(self, epoch: int, value: float) -> None:
            """(In the report thread.)"""
            from studio import tracking

            self.pruned = True
            self.stop_reason = pruned_note(epoch, self.metric, value)
            self.inner.set_trial_state("pruned")
            run_id = getattr(self.inner, "run_id", None)
            if run_id:
                tracking.set_tags(run_id, {TAG_TRIAL_STATE: "pruned"})

        def on_note(self, sentence: str) -> None:
            self.inner.on_note(sentence)

        def on_folds_kept(self, kept: list[dict[str, float]]) -> None:
            self.folds_kept = list(kept)

        def after_run(self, spec: Any) -> None:
            """The run ended well: its final score, then a small table's other folds."""
            self.inner.after_run(spec)
            self.report_final()
            self.cross_validate(spec)

        def cross_validate(self, spec: Any) -> None:
            """After the run (fold 0) ended well: train the other folds of a small table and give the
            trial the mean score (user attribute ``cv_value``, which the driver takes as its value; a
            fold without a finite score makes it ``None``: the trial then counts as failed). The
            folds' scores are logged on the run as ``cv/<metric>``, one step per fold."""
            from studio.data import get_dataset

            folds = cv_folds(spec, get_dataset(spec.data.dataset_id).n_rows)
            if folds < 2 or self.pruned or self.kept is None or self.kept.value is None:
                return
            from studio import tracking
            from studio.engine.training import fold_scores

            scores: list[float | None] = [self.kept.value]
            losses = [self.kept.loss]
            for fold in range(1, folds):
                # a fold ensemble's run trained its fold models already: their scores are the folds'
                trained = self.folds_kept[fold - 1] if fold - 1 < len(self.folds_kept) else None
                kept = trained if trained is not None else fold_scores(spec, fold, self.should_stop)
                score = kept.get(self.metric)
                scores.append(score if score is not None and math.isfinite(score) else None)
                losses.append(kept.get("val/loss"))
            found = [score for score in scores if score is not None]
            value = sum(found) / folds if len(found) == folds else None
            finite = [loss for loss in losses if loss is not None and math.isfinite(loss)]
            # a tie between two trials' mean scores goes to the lower mean validation loss
            self.kept.loss = sum(finite) / folds if len(finite) == folds else math.inf
            trial = self.trial()
            trial.set_user_attr("cv_scores", scores)
            trial.set_user_attr("cv_value", value)
            run_id = getattr(self.inner, "run_id", None)
            if run_id:
                name = "cv/" + self.metric.split("/", 1)[-1]
                buffer = tracking.MetricBuffer(run_id, {})
                for fold, score in enumerate(scores):
                    if score is not None:
                        buffer.add({name: score}, fold)
                buffer.close()
            self.inner.on_note(cv_note(folds, self.metric, scores))

        def should_stop(self) -> bool:
            return self.inner.should_stop() or self.pruned

        def flush(self) -> None:
            self.inner.flush()
            if self._reporter is not None:  # the reports sent (their errors are the job's: it ended)
                with self._lock:
                    self._finished = True
                with contextlib.suppress(Exception):
                    self._wait()
                self._reporter.shutdown(wait=True)
                self._reporter = None
            if self._trial is not None:  # what reporting cost this trial (the search's overhead)
                with contextlib.suppress(Exception):  # the trial may have been told already
                    self._trial.set_user_attr("report_seconds", round(self.report_seconds, 4))
                    self._trial.set_user_attr("report_cpu_seconds", round(self.report_cpu_seconds, 4))
                    if self.kept.loss is not None and math.isfinite(self.kept.loss):
                        self._trial.set_user_attr("kept_loss", float(self.kept.loss))

    return TrialHooks()
