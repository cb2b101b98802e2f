"""The real worker (``python -m studio.cli.worker``) running the real ``train()`` on a tiny table."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from studio import jobs
from studio.core.spec import RunSpec
from studio.jobs.executors.local import visible_gpus
from tests.jobs.jobhelpers import tiny_csv, wait_until


def _spec(dataset_id: str, name: str, **sections: dict) -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "y"},
            **sections,
        }
    )


def _mlflow_status(run_id: str) -> str:
    from studio import tracking

    return tracking.client().get_run(run_id).info.status


@pytest.mark.python_m_workers  # (a studio's worker as it starts by default: a new interpreter)
def test_real_job_trains_to_the_end_and_another_is_cancelled_mid_run(jobs_home: Path, tmp_path: Path) -> None:
    from studio.data import add_csv

    dataset = add_csv(tiny_csv(tmp_path))
    # One CPU slot: the two run one after the other, both submitted at once.
    short = jobs.submit_job(_spec(dataset.id, "short", training={"epochs": 2, "batch_size": 16}))
    long = jobs.submit_job(
        _spec(
            dataset.id, "long", training={"epochs": 5000, "batch_size": 16}, early_stopping={"enabled": False}
        )
    )

    done = wait_until(lambda: not (j := jobs.get_job(short.id)).is_active and j, timeout=120)
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()}"
    assert done.mlflow_run_id and done.experiment_id and done.device == "cpu:0"
    assert {"test/accuracy", "test/loss"} <= set(done.test_metrics)
    assert done.epoch == 2 and done.fraction == pytest.approx(1.0)
    assert zipfile.is_zipfile(done.bundle_path) and Path(done.bundle_path).parent == done.log_path.parent

    running = wait_until(lambda: ((j := jobs.get_job(long.id)).epoch or 0) >= 2 and j, timeout=120)
    assert running.state == jobs.RUNNING and running.mlflow_run_id
    asked = time.monotonic()
    jobs.cancel_job(long.id)
    ended = wait_until(lambda: not (j := jobs.get_job(long.id)).is_active and j, timeout=15)
    latency = time.monotonic() - asked

    print(f"cancel latency of a real training job: {latency:.2f} s")
    assert ended.state == jobs.CANCELLED and latency < 5, (ended.state, latency, ended.reason)
    assert _mlflow_status(done.mlflow_run_id) == "FINISHED"
    assert _mlflow_status(ended.mlflow_run_id) == "KILLED"


@pytest.mark.gpu
@pytest.mark.skipif(not visible_gpus(), reason="needs a CUDA GPU")
def test_real_gpu_job_runs_on_its_own_gpu_slot(
    jobs_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio import tracking
    from studio.data import add_csv

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # jobs_home hides the GPUs; this test wants them
    dataset = add_csv(tiny_csv(tmp_path))
    gpus = visible_gpus()
    last = f"cuda:{len(gpus) - 1}"
    job = jobs.submit_job(_spec(dataset.id, "gpu", training={"epochs": 2, "device": last}))

    done = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=180)

    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()}"
    assert done.device == last
    # The worker sees only its slot's GPU, as GPU 0.
    assert tracking.client().get_run(done.mlflow_run_id).data.tags[tracking.TAG_DEVICE].startswith("GPU 0")


def test_a_warm_worker_runs_the_next_job_too(jobs_home: Path, tmp_path: Path) -> None:
    """A job goes to the warm worker waiting on its slot (no import wait); after a job that ended well,
    that worker says it is ready and the slot's next job goes to the same process (no second import),
    each job's output still in its own log."""
    from studio.data import add_csv

    dataset = add_csv(tiny_csv(tmp_path))
    jobs.ensure_scheduler()
    standby_log = jobs_home / "standby-worker.log"
    # it imports torch and Lightning, then waits on stdin
    wait_until(lambda: standby_log.exists() and "warm: the training stack" in standby_log.read_text(), 60)
    first = jobs.submit_job(_spec(dataset.id, "first", training={"epochs": 2, "batch_size": 16}))
    one = wait_until(lambda: not (j := jobs.get_job(first.id)).is_active and j, timeout=120)
    assert one.state == jobs.SUCCEEDED, f"{one.reason}\n{one.log_path.read_text()}"
    scheduler_log = jobs_home / "scheduler.log"
    assert f"job {first.id}: handed to warm worker {one.pid}" in scheduler_log.read_text()
    wait_until(lambda: f"job {first.id} ended; worker" in scheduler_log.read_text(), timeout=30)

    second = jobs.submit_job(_spec(dataset.id, "second", training={"epochs": 2, "batch_size": 16}))
    two = wait_until(lambda: not (j := jobs.get_job(second.id)).is_active and j, timeout=120)
    assert two.state == jobs.SUCCEEDED, f"{two.reason}\n{two.log_path.read_text()}"
    assert two.pid == one.pid  # the same process ran both
    assert f"job {second.id}: handed to warm worker {one.pid}" in scheduler_log.read_text()
    first_log, second_log = one.log_path.read_text(), two.log_path.read_text()
    assert first.id in first_log and second.id not in first_log
    assert second.id in second_log and first.id not in second_log
    assert f"job {first.id} ended succeeded; waiting for the next job" in standby_log.read_text()
