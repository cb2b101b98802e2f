"""The Runs page tells the truth about runs that can resume: a cancelled run with saved progress offers
Resume and continues to the end; an interrupted run says so in plain words; a run that ran out of memory
and went on with a smaller batch says that, and still shows as plainly finished."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from studio import jobs
from studio.engine.checkpoints import checkpoint_file
from studio.jobs import store, worker
from studio.jobs.scheduler import REASON_INTERRUPTED
from tests.pages.test_runs_page import home, page, run_in_process, spec, tiny_dataset  # noqa: F401


def run_here(job_id: str) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        worker.run_job(job_id)
    finally:
        signal.signal(signal.SIGTERM, previous)


def texts(at) -> str:
    return "\n".join(
        [m.value for m in at.markdown]
        + [e.value for kind in ("info", "warning", "success", "error", "caption") for e in at.get(kind)]
    )


def test_a_cancelled_run_with_saved_progress_resumes_from_its_page(
    home: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", "0.3")  # time to cancel it mid-run
    monkeypatch.setattr(jobs, "ensure_scheduler", lambda **_: None)  # the test runs the worker itself
    job = jobs.submit_job(spec(tiny_dataset(tmp_path), "resumable", training={"epochs": 6}))

    def cancel_after_two_epochs() -> None:
        while (saved := store.job_checkpoint(job.id)) is None or saved.epoch < 2:
            threading.Event().wait(0.05)
        store.request_cancel(job.id)

    canceller = threading.Thread(target=cancel_after_two_epochs, daemon=True)
    canceller.start()
    run_here(job.id)
    canceller.join(timeout=30)
    cancelled = jobs.get_job(job.id)
    saved = cancelled.checkpoint
    assert cancelled.state == jobs.CANCELLED and saved is not None and saved.epoch < 6

    at = page()
    assert any("resumable" in m.value and "Cancelled — can resume" in m.value for m in at.markdown)
    assert f"saved up to epoch {saved.epoch}" in at.get("progress")[0].proto.text
    at = page(job.id)
    assert not at.exception
    assert (
        f"This run was cancelled. Its progress up to epoch {saved.epoch} is saved: press Resume to continue "
        f"from epoch {saved.epoch + 1}, in the same MLflow run; it ends as if it had never stopped."
    ) in [i.value for i in at.info]

    at.button(key="resume-run").click().run()
    assert not at.exception
    assert jobs.get_job(job.id).state == jobs.QUEUED
    assert "Waiting" in at.caption[0].value and not [b for b in at.button if b.key == "resume-run"]

    monkeypatch.delenv("STUDIO_TEST_SLOW_EPOCHS")
    run_here(job.id)
    done = jobs.get_job(job.id)
    assert done.state == jobs.SUCCEEDED and done.mlflow_run_id == cancelled.mlflow_run_id, done.reason
    at = page(job.id)
    assert not at.exception and not at.error
    assert "Finished" in at.caption[0].value and "can resume" not in at.caption[0].value
    assert f"Resumed at epoch {saved.epoch + 1} from its saved progress." in [i.value for i in at.info]
    assert at.metric  # the final scores
    assert not [b for b in at.button if b.key == "resume-run"]


def test_an_interrupted_run_says_so_and_offers_resume_only_while_its_progress_is_saved(
    home: Path,  # noqa: F811
) -> None:
    job = jobs.submit_job(spec("ds-gone", "interrupted run", training={"epochs": 20}), start_scheduler=False)
    store.claim_job(job.id, "cpu:0")
    store.set_progress(
        job.id, epoch=4, max_epochs=20, step=40, total_steps=200, fraction=0.2, eta_seconds=30.0, metrics={}
    )
    folder = store.checkpoint_dir(job.id)
    folder.mkdir(parents=True)
    checkpoint_file(folder, 3).write_bytes(b"saved state")
    reason = REASON_INTERRUPTED.format(epoch=3, job_id=job.id, log=store.log_path(job.id))
    store.finish_job(job.id, jobs.INTERRUPTED, reason=reason)

    at = page()
    assert any("interrupted run" in m.value and "Interrupted — can resume" in m.value for m in at.markdown)
    at = page(job.id)
    assert not at.exception
    (warning,) = at.warning
    assert warning.value == (
        "This run was interrupted before it finished (the reason is below). Its progress up to epoch 3 is "
        "saved: press Resume to continue from epoch 4, in the same MLflow run; it ends as if it had never "
        "stopped."
    )
    assert "The worker process stopped unexpectedly" in texts(at)
    assert at.button(key="resume-run").label == "Resume"

    store.remove_checkpoints(job.id)  # the saved progress is gone: no promise, no button
    at = page(job.id)
    assert "Interrupted" in at.caption[0].value and "can resume" not in at.caption[0].value
    assert "its saved progress is gone, so it cannot resume" in at.warning[0].value
    assert not [b for b in at.button if b.key == "resume-run"]


def test_a_run_that_ran_out_of_memory_says_how_it_went_on(
    home: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "4")  # 4 steps per epoch: at the start of epoch 2
    done = run_in_process(spec(tiny_dataset(tmp_path), "short of memory", training={"epochs": 4}))
    note = (
        "Ran out of memory at batch size 16; continued from epoch 2 with batch size 8 × 2 accumulated steps."
    )
    assert done.state == jobs.SUCCEEDED and done.note == note and done.reason is None

    at = page(done.id)
    assert not at.exception and not at.error
    assert note in [i.value for i in at.info]
    assert "Finished" in at.caption[0].value and "earlier epoch" not in at.caption[0].value
    assert at.success  # training finished: the plain success message
