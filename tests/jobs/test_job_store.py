"""The job store: ids, reads, atomic claims, cancel/delete rules, slots. Real SQLite, real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio import jobs
from studio.core.errors import JobError
from studio.jobs import store
from studio.jobs.executors import Slot
from studio.jobs.executors.local import device_slots, visible_gpus
from studio.jobs.scheduler import pick_slot
from tests.jobs.jobhelpers import fake_spec


def test_submitted_job_is_queued_with_its_spec(jobs_home: Path) -> None:
    first = jobs.submit_job(fake_spec("first"), start_scheduler=False)
    second = jobs.submit_job(fake_spec("second", epochs=7), start_scheduler=False)

    assert first.id.startswith("job-") and len(first.id) == len("job-20261125-0a1b2c")
    assert (jobs_home / "studio.db").exists()
    loaded = jobs.get_job(second.id)
    assert loaded.state == jobs.QUEUED and loaded.is_active
    assert loaded.spec.training.epochs == 7 and loaded.name == "second"
    assert loaded.dataset_id == "ds-fake" and loaded.device_request == "cpu"
    assert loaded.progress_text == "waiting for a free device"
    assert [j.id for j in jobs.list_jobs()] == [second.id, first.id]
    assert [j.id for j in jobs.list_jobs(limit=1)] == [second.id]
    assert jobs.list_jobs(states=["running"]) == []


def test_unknown_job_and_state_are_plain_errors(jobs_home: Path) -> None:
    with pytest.raises(JobError, match="There is no job 'job-nope'"):
        jobs.get_job("job-nope")
    with pytest.raises(JobError, match="Unknown job state 'paused'"):
        jobs.list_jobs(states=["paused"])


def test_queued_job_can_be_cancelled_then_deleted(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)

    cancelled = jobs.cancel_job(job.id)

    assert cancelled.state == jobs.CANCELLED and not cancelled.is_active
    assert cancelled.reason == "Cancelled before it started." and cancelled.ended_at is not None
    assert store.claim_job(job.id, "cpu:0") is False  # a cancelled job never starts
    with pytest.raises(JobError, match="already ended"):
        jobs.cancel_job(job.id)
    jobs.delete_job(job.id)
    assert jobs.list_jobs() == []


def test_running_job_cannot_be_deleted_and_cancel_only_flags_it(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    assert store.claim_job(job.id, "cpu:0")

    with pytest.raises(JobError, match="cancel it first"):
        jobs.delete_job(job.id)
    flagged = store.request_cancel(job.id)
    assert flagged.state == jobs.RUNNING and flagged.cancel_requested
    assert store.cancel_requested(job.id)


def test_a_busy_slot_cannot_be_claimed_twice(jobs_home: Path) -> None:
    a = jobs.submit_job(fake_spec(), start_scheduler=False)
    b = jobs.submit_job(fake_spec(), start_scheduler=False)

    assert store.claim_job(a.id, "cpu:0")
    assert not store.claim_job(b.id, "cpu:0")
    assert store.claim_job(b.id, "cpu:1")
    assert not store.claim_job(a.id, "cpu:2")  # already running


def test_finish_is_conditional_and_never_overwrites_an_ended_job(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    store.claim_job(job.id, "cpu:0")
    store.set_worker(job.id, 4242, 1.0)

    assert not store.finish_job(job.id, jobs.FAILED, reason="x", only_pid=1)  # another worker's cleanup
    assert store.finish_job(job.id, jobs.SUCCEEDED, test_metrics={"test/accuracy": 0.5}, only_pid=4242)
    assert not store.finish_job(job.id, jobs.FAILED, reason="late")
    done = jobs.get_job(job.id)
    assert (
        done.state == jobs.SUCCEEDED and done.reason is None and done.test_metrics == {"test/accuracy": 0.5}
    )


CLAIMER = textwrap.dedent(
    """
    import sys
    from studio.jobs import store
    me, ids = sys.argv[1], sys.argv[2:]
    won = [job_id for job_id in ids if store.claim_job(job_id, f"{me}:{job_id}")]
    print(" ".join(won))
    """
)


def test_claiming_is_atomic_across_racing_processes(jobs_home: Path) -> None:
    ids = [jobs.submit_job(fake_spec(), start_scheduler=False).id for _ in range(12)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, f"racer{n}", *(ids if n % 2 else ids[::-1])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    won = [job_id for racer in racers for job_id in racer.communicate(timeout=60)[0].split()]

    assert sorted(won) == sorted(ids)  # every job claimed, none twice
    assert all(job.state == jobs.RUNNING for job in jobs.list_jobs())


def test_progress_text_reads_like_a_sentence(jobs_home: Path) -> None:
    job = jobs.submit_job(fake_spec(), start_scheduler=False)
    store.claim_job(job.id, "cpu:0")
    assert jobs.get_job(job.id).progress_text == "starting"

    store.set_progress(
        job.id,
        epoch=3,
        max_epochs=20,
        step=30,
        total_steps=200,
        fraction=0.15,
        eta_seconds=40.2,
        metrics={"train/loss": 0.5, "note": "not a number"},
    )

    running = jobs.get_job(job.id)
    assert running.progress_text == "epoch 3/20 · 15% · about 40 s left"
    assert running.metrics == {"train/loss": 0.5}
    assert jobs.format_duration(4000) == "1 h 7 min" and jobs.format_duration(150) == "2 min"


def test_slots_follow_the_requested_device() -> None:
    cpu_only = device_slots(gpus=[], cpu_slots=2)
    with_gpus = device_slots(gpus=["0", "1"], cpu_slots=1)

    assert [s.name for s in with_gpus] == ["cuda:0", "cuda:1", "cpu:0"]
    assert pick_slot("cpu", with_gpus, set()) == Slot("cpu:0", "")
    assert pick_slot("auto", with_gpus, {"cuda:0"}) == Slot("cuda:1", "1")
    assert pick_slot("auto", with_gpus, {"cuda:0", "cuda:1"}) is None  # waits for a GPU
    assert pick_slot("auto", cpu_only, {"cpu:0"}) == Slot("cpu:1", "")
    assert pick_slot("cuda:1", with_gpus, set()) == Slot("cuda:1", "1")
    assert pick_slot("cuda:1", with_gpus, {"cuda:1"}) is None
    with pytest.raises(ValueError, match="has no GPU"):
        pick_slot("cuda", cpu_only, set())
    with pytest.raises(ValueError, match="has 2 GPU"):
        pick_slot("cuda:2", with_gpus, set())


def test_visible_gpus_respect_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.app import forms
    from studio.core import system

    monkeypatch.setattr(system, "gpu_names", lambda: ("A", "B", "C", "D"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    assert forms.visible_gpu_names() == ["C", "D"]  # the scheduler's slots and the page's names agree
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


def _open_store_together(barrier, errors) -> None:  # runs in a forked child
    barrier.wait()
    try:
        with store.connect() as conn:
            conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
    except Exception as err:  # noqa: BLE001 - the test reports what the child saw
        errors.put(str(err))


def test_many_processes_making_a_new_store_at_the_same_moment_all_get_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Switching a new store to WAL used to answer "database is locked" at once (no wait) to
    whichever process lost the race; CI saw it when four tabs submitted at the first start."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for round_ in range(15):
        monkeypatch.setenv("STUDIO_HOME", str(tmp_path / f"home-{round_}"))
        (tmp_path / f"home-{round_}").mkdir()
        barrier = ctx.Barrier(8)
        children = [ctx.Process(target=_open_store_together, args=(barrier, errors)) for _ in range(8)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=60)
        assert all(child.exitcode == 0 for child in children)
    seen = []
    while not errors.empty():
        seen.append(errors.get())
    assert seen == []
