"""The ``ray`` executor against a real local Ray head and a real MLflow server: jobs from the CLI (a text
data set) and from the Train page (a table) train on Ray (the node fetches the data set from MLflow into
its own folder) and land in MLflow, their bundles coming back; cancel stops the Ray job; a killed worker
ends the job failed with Ray's reason; five queued jobs on two CPU slots each run once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from studio import jobs, tracking
from tests.jobs.jobhelpers import tiny_csv, wait_until

pytestmark = pytest.mark.ray
NODE_HOME = "STUDIO_NODE_HOME"
REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )


def _ended(job_id: str, timeout: float = 240) -> jobs.Job:
    return wait_until(lambda: not (j := jobs.get_job(job_id)).is_active and j, timeout=timeout, poll=0.25)


def _ray_client(head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.address)


def _ray_jobs_of(head, job_id: str) -> list:
    return [j for j in _ray_client(head).list_jobs() if (j.metadata or {}).get("studio_job") == job_id]


def _first_step_seconds(run_id: str, submitted: float) -> float:
    points = tracking.client().get_metric_history(run_id, "train/loss")
    return min(p.timestamp for p in points) / 1000 - submitted


def _reviews_csv(tmp_path: Path) -> Path:
    """A table of reviews whose label a keyword decides in 80% of rows (the price the rest)."""
    from tests.text.test_text_training import reviews

    csv = tmp_path / "reviews.csv"
    reviews(400, seed=1).to_csv(csv, index=False)
    return csv


# The same job for the Ray executor and the local one: one bag of words on the reviews, 12 epochs (not the
# five fold models the CLI starts with for so few rows: five times the training, and no more to check here).
SUBMIT_REVIEWS = (
    *("--target", "label", "--epochs", "12", "--batch-size", "32"),
    *("--set", "early_stopping.enabled=false", "--set", "data.use_all_data=false"),
)


def test_a_cli_job_trains_text_on_ray_from_data_fetched_through_mlflow(on_ray, tmp_path: Path) -> None:
    """A text data set (the kind with the most to carry: its vocabulary is built on the node) submitted
    from the CLI; the tables' jobs on Ray are the tests below."""
    from studio.bundle import load_bundle
    from studio.data import add_data_file

    dataset = add_data_file(_reviews_csv(tmp_path))
    submitted = time.time()
    out = _cli("jobs", "submit", "--data", dataset.id, *SUBMIT_REVIEWS, "--name", "on ray")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[-1].strip()
    done = _ended(job_id)
    log = done.log_path.read_text()
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{log}"

    # The node had its own folder and fetched the data set from MLflow; the studio's folder was not used.
    node = tmp_path / "node"
    assert f"data set {dataset.id}: fetched from MLflow into {node / 'datasets'}" in log
    assert (node / "datasets" / dataset.id / "data.parquet").is_file()
    assert str(dataset.path) not in log
    (ray_job,) = _ray_jobs_of(on_ray, job_id)
    assert str(ray_job.status.value) == "SUCCEEDED" and ray_job.entrypoint.endswith(
        f"studio.cli.worker --ray {job_id}"
    )

    run = tracking.client().get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["studio.executor"] == "ray"
    assert run.data.tags["studio.dataset_run"] and run.inputs.dataset_inputs[0].dataset.name == dataset.id
    assert run.data.tags[tracking.TAG_KIND] == "text"
    assert run.data.tags[tracking.TAG_ARCH] == "bag_of_words"
    assert done.epoch == 12 and {"test/accuracy", "test/loss"} <= set(done.test_metrics)
    # a keyword decides 80 % of the rows, the price the rest: a guess gets about half
    assert run.data.metrics["test/accuracy"] > 0.8, run.data.metrics
    assert run.data.metrics["test/accuracy"] == pytest.approx(done.test_metrics["test/accuracy"])

    # The bundle came back from the node through MLflow, and predicts raw text here.
    assert Path(done.bundle_path).is_file() and Path(done.bundle_path).parent == done.log_path.parent
    with load_bundle(done.bundle_path) as bundle:
        assert bundle.kind == "text"
        predicted = bundle.predict(
            [
                {"review": "i love this phone, great screen", "price": 50.0},
                {"review": "awful delivery and a broken box", "price": 50.0},
            ]
        )
    assert list(predicted["predicted_label"]) == ["pos", "neg"], predicted
    print(
        f"ray: {_first_step_seconds(done.mlflow_run_id, submitted):.1f} s from submit to the first logged step"
    )


def _spec(dataset_id: str, name: str, **training):
    from studio.core.spec import RunSpec

    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "y"},
            "training": {"epochs": 2, "batch_size": 16, **training},
            "early_stopping": {"enabled": False},
        }
    )


def _worker_process(job_id: str) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "studio.cli.worker" in cmdline and cmdline[-1] == job_id:
            return proc
    return None


def test_cancel_stops_the_ray_job_and_a_killed_worker_fails_with_rays_reason(
    on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.data import add_csv

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "3600")  # nothing saved: the killed one cannot resume
    # Each epoch waits 0.2 s at its end: the two long runs stay mid-run without keeping both cores busy
    # for the whole test (the workers, Ray and the cancel are the same).
    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", "0.2")

    dataset = add_csv(tiny_csv(tmp_path, rows=80))
    # Two long runs at once (the head has 2 CPUs): one is cancelled, the other's worker is killed.
    stopped = jobs.submit_job(_spec(dataset.id, "to cancel", epochs=5000))
    killed = jobs.submit_job(_spec(dataset.id, "to kill", epochs=5000))
    for job in (stopped, killed):  # progress and the run id come back from the Ray job's log
        wait_until(lambda j=job: (jobs.get_job(j.id).epoch or 0) >= 2, timeout=240, poll=0.25)
    assert jobs.get_job(stopped.id).mlflow_run_id and jobs.get_job(killed.id).mlflow_run_id

    asked = time.monotonic()
    jobs.cancel_job(stopped.id)
    cancelled = _ended(stopped.id, timeout=60)
    latency = time.monotonic() - asked
    print(f"cancel latency of a Ray job: {latency:.2f} s")
    assert cancelled.state == jobs.CANCELLED, cancelled.reason
    assert str(_ray_jobs_of(on_ray, stopped.id)[0].status.value) == "STOPPED"
    assert tracking.get_run(cancelled.mlflow_run_id).status == "KILLED"

    worker = _worker_process(killed.id)
    assert worker is not None
    # The worker knows nothing of the studio's folder: its own home, its own working directory (Ray's copy
    # of the code), no variable naming the studio's data.
    env, studio_home = worker.environ(), os.environ["STUDIO_HOME"]
    assert env[NODE_HOME] == str(tmp_path / "node") and "STUDIO_HOME" not in env
    assert not any(studio_home in value for value in env.values())
    assert not Path(worker.cwd()).is_relative_to(studio_home) and not Path(worker.cwd()).is_relative_to(REPO)
    os.kill(worker.pid, signal.SIGKILL)
    failed = _ended(killed.id, timeout=60)
    assert failed.state == jobs.FAILED
    assert failed.reason.startswith("Ray ended the job: ") and "exit code" in failed.reason, failed.reason
    assert str(_ray_jobs_of(on_ray, killed.id)[0].status.value) == "FAILED"
    assert tracking.get_run(failed.mlflow_run_id).status == "FAILED"
    assert "Ray ended the job" in tracking.get_run(failed.mlflow_run_id).tags["studio.failure_reason"]


def test_five_queued_jobs_on_two_cpu_slots_each_run_once_across_a_scheduler_restart(
    on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stand-in workers (a few seconds each, no training). The scheduler is stopped while the first two
    run on Ray: a new one adopts them from Ray's job list instead of calling them dead or starting them
    again."""
    from studio.data import add_csv

    runs = tmp_path / "fake_runs.log"
    monkeypatch.setenv(
        "STUDIO_TEST_RAY_ENTRYPOINT", f"{{python}} {REPO}/tests/cluster/fake_ray_worker.py {{job_id}}"
    )
    monkeypatch.setenv("STUDIO_TEST_FAKE_RUNS", str(runs))
    monkeypatch.setenv("STUDIO_TEST_FAKE_SECONDS", "4")
    dataset = add_csv(tiny_csv(tmp_path, rows=40))
    queued = [jobs.submit_job(_spec(dataset.id, f"fake {i}")) for i in range(5)]

    def on_ray_now() -> list[str]:
        return [
            job.id
            for job in queued
            if any(str(r.status.value) == "RUNNING" for r in _ray_jobs_of(on_ray, job.id))
        ]

    first = wait_until(on_ray_now, timeout=90, poll=0.1)
    assert jobs.stop_scheduler(timeout=10)
    assert all(jobs.get_job(job_id).state == jobs.RUNNING for job_id in first)  # left running on Ray
    jobs.ensure_scheduler()

    done = [_ended(job.id, timeout=180) for job in queued]
    assert [job.state for job in done] == [jobs.SUCCEEDED] * 5, [job.reason for job in done]
    lines = [line.split() for line in runs.read_text().splitlines()]
    assert sorted(line[0] for line in lines) == sorted(job.id for job in queued)  # each ran exactly once
    assert all(len(_ray_jobs_of(on_ray, job.id)) == 1 for job in queued)  # one Ray job each
    spans = [(float(start), float(end)) for _, start, end in lines]
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most <= 2, spans  # never more than the two CPU slots at once
    assert {job.device for job in done} == {"cpu:0", "cpu:1"}


def test_pressing_train_on_the_page_trains_on_ray(on_ray, tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from studio import data as datasets

    datasets.add_sample("wine")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train__training__epochs").set_value(2).run()
    at.text_input(key="train__name").set_value("page on ray").run()
    at.button(key="train_submit").click().run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]

    (job,) = jobs.list_jobs()
    done = _ended(job.id)
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()}"
    (ray_job,) = _ray_jobs_of(on_ray, job.id)
    assert str(ray_job.status.value) == "SUCCEEDED"
    assert tracking.get_run(done.mlflow_run_id).status == "FINISHED" and Path(done.bundle_path).is_file()

    runs = AppTest.from_file(str(REPO / "pages" / "runs.py"), default_timeout=60)
    runs.query_params["job"] = job.id
    runs.run()
    assert not runs.exception and not runs.error
    assert runs.title[0].value == "page on ray" and runs.download_button(key="download-model")


def test_submit_to_first_logged_step_with_the_local_executor_for_comparison(
    cluster_mlflow, studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same small text job as the CLI test above, run by the default ``local`` executor (a cold worker:
    the scheduler's first job), against the same MLflow server: the number the Ray one is compared with.
    It is cancelled once that step is logged (the rest of its training is the CLI test's)."""
    from studio.data import add_data_file

    monkeypatch.setenv("MLFLOW_TRACKING_URI", cluster_mlflow.url)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STUDIO_EXECUTOR", raising=False)
    tracking._client_for.cache_clear()
    dataset = add_data_file(_reviews_csv(tmp_path))
    submitted = time.time()
    out = _cli("jobs", "submit", "--data", dataset.id, *SUBMIT_REVIEWS, "--name", "local")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[-1].strip()

    def first_step() -> str | None:
        run_id = jobs.get_job(job_id).mlflow_run_id
        return run_id and tracking.client().get_metric_history(run_id, "train/loss") and run_id

    try:
        run_id = wait_until(first_step, timeout=240, poll=0.25)
        jobs.cancel_job(job_id)
        ended = _ended(job_id, timeout=60)
    finally:
        jobs.stop_scheduler(timeout=10)
    assert ended.state == jobs.CANCELLED, ended.reason
    assert "studio.executor" not in tracking.get_run(run_id).tags
    print(f"local: {_first_step_seconds(run_id, submitted):.1f} s from submit to the first logged step")


def test_a_job_whose_data_cannot_reach_mlflow_fails_with_a_plain_reason(
    on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.data import add_csv
    from studio.jobs import store
    from studio.jobs.executors import Slot, make_executor
    from tests.mlflow_server.mlflow_server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracking._client_for.cache_clear()
    dataset = add_csv(tiny_csv(tmp_path, rows=40))
    job = jobs.submit_job(_spec(dataset.id, "no server"), start_scheduler=False)
    assert store.claim_job(job.id, "cpu:0")

    make_executor().submit(jobs.get_job(job.id), Slot("cpu:0", ""))
    failed = jobs.get_job(job.id)
    assert failed.state == jobs.FAILED
    assert failed.reason.startswith(
        f"The data set {dataset.id} could not be sent to the MLflow server at {dead}, where the Ray machines"
    ), failed.reason
    assert _ray_jobs_of(on_ray, job.id) == []  # nothing reached Ray


def test_a_killed_worker_after_a_saved_epoch_is_interrupted_and_resumes_on_ray(
    on_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node sends each checkpoint to MLflow; the studio fetches the last one when the Ray job dies,
    so the job can resume (on whichever node Ray picks) in the same MLflow run."""
    from studio.data import add_csv
    from studio.jobs import store

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("STUDIO_RAY_CHECKPOINT_SECONDS", "0")
    monkeypatch.setenv("STUDIO_TEST_SLOW_EPOCHS", "1.5")
    dataset = add_csv(tiny_csv(tmp_path, rows=80))
    job = jobs.submit_job(_spec(dataset.id, "resumed on ray", epochs=6))

    def sent_checkpoint() -> bool:
        run_id = jobs.get_job(job.id).mlflow_run_id
        return bool(run_id) and bool(tracking.client().list_artifacts(run_id, "checkpoints"))

    wait_until(sent_checkpoint, timeout=240, poll=0.25)
    os.kill(_worker_process(job.id).pid, signal.SIGKILL)
    stopped = _ended(job.id, timeout=60)
    assert stopped.state == jobs.INTERRUPTED, stopped.reason
    assert "Its progress up to epoch" in stopped.reason and f"jobs resume {job.id}" in stopped.reason
    saved = store.job_checkpoint(job.id)
    assert saved is not None and 1 <= saved.epoch < 6
    assert tracking.get_run(stopped.mlflow_run_id).status == "KILLED"

    jobs.resume_job(job.id)
    done = _ended(job.id)
    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()}"
    assert done.mlflow_run_id == stopped.mlflow_run_id and done.epoch == 6
    assert f"resuming from epoch-{saved.epoch:04d}.ckpt, fetched from MLflow" in done.log_path.read_text()
    run = tracking.client().get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED"
    epochs = [p.step for p in tracking.client().get_metric_history(done.mlflow_run_id, "val/loss")]
    assert len(epochs) == len(set(epochs)) == 6  # every epoch once: nothing logged twice
    assert tracking.client().list_artifacts(done.mlflow_run_id, "checkpoints") == []  # removed at the end
    assert store.job_checkpoint(job.id) is None
