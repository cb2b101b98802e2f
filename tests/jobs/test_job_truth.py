"""What a job row says is true: no time left before it is measured, no NaN in its metrics, and a run that
kept an earlier epoch carries that note."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from types import SimpleNamespace

from studio import jobs
from studio.jobs import store, worker
from tests.jobs.jobhelpers import fake_spec


def _progress(job_id: str, epoch: int, eta: float | None, metrics: dict[str, float] | None = None) -> None:
    store.set_progress(
        job_id,
        epoch=epoch,
        max_epochs=10,
        step=epoch * 5,
        total_steps=50,
        fraction=epoch / 10,
        eta_seconds=eta,
        metrics=metrics or {},
    )


def test_time_left_is_not_guessed_before_an_epoch_is_measured(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    assert store.claim_job(job.id, "cpu:0")
    _progress(job.id, 1, None)
    assert jobs.get_job(job.id).progress_text == "epoch 1/10 · 10% · measuring the time left…"
    _progress(job.id, 3, 42.0)
    assert jobs.get_job(job.id).progress_text == "epoch 3/10 · 30% · about 42 s left"


def test_metrics_stored_as_json_are_finite(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    assert store.claim_job(job.id, "cpu:0")
    _progress(job.id, 2, 10.0, {"train/loss": math.nan, "val/loss": math.inf, "val/accuracy": 0.5})
    store.finish_job(job.id, jobs.FAILED, reason="x", test_metrics={"test/loss": -math.inf, "test/r2": 0.1})
    with store.connect() as conn:
        row = conn.execute(
            "SELECT metrics_json, test_metrics_json FROM jobs WHERE id = ?", (job.id,)
        ).fetchone()
    for text in row:
        json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(AssertionError(name)))
    ended = jobs.get_job(job.id)
    assert ended.metrics == {"val/accuracy": 0.5} and ended.test_metrics == {"test/r2": 0.1}


def test_a_run_that_kept_an_earlier_epoch_succeeds_with_its_note(jobs_home: Path) -> None:
    note = "Stopped at epoch 7 when the loss became infinite; kept the best epoch, 4."

    def train_fn(spec, *, job_id, hooks, bundle_out, progress_bar, **_):
        return SimpleNamespace(
            run_id=None, experiment_id=None, test_metrics={"test/r2": 0.5}, bundle_path=None, note=note
        )

    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert worker.run_job(job.id, train_fn=train_fn) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    done = jobs.get_job(job.id)
    assert done.state == jobs.SUCCEEDED and done.reason == note
