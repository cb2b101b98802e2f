"""A data set that a queued or running job trains on is not deleted from under it: the store, and the CLI
in a real subprocess, refuse with the jobs' names; once they end (or are cancelled) it can be deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio import jobs
from studio.core.errors import DatasetError
from studio.core.spec import RunSpec
from studio.data import add_csv, list_datasets
from studio.jobs import delete_dataset
from studio.jobs import store as job_store

REPO = Path(__file__).resolve().parents[2]
CSV = "a,b,label\n" + "".join(f"{i},{i % 7},{'x' if i % 3 else 'y'}\n" for i in range(30))


def queue(dataset_id: str, name: str) -> jobs.Job:
    spec = RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "label"},
            "training": {"epochs": 1, "device": "cpu"},
        }
    )
    return jobs.submit_job(spec, start_scheduler=False)


@pytest.fixture
def wine(studio_home: Path, tmp_path: Path):
    path = tmp_path / "wine.csv"
    path.write_text(CSV, encoding="utf-8")
    return add_csv(path)


def test_a_data_set_no_job_uses_is_deleted(wine) -> None:
    other = queue("someone-else-12345678", "other · label")
    assert job_store.active_jobs_using(wine.id) == [] and other.state == "queued"
    delete_dataset(wine.id)
    assert list_datasets() == []


def test_a_queued_or_running_job_keeps_its_data_set(wine) -> None:
    first = queue(wine.id, "wine · label · first")
    with pytest.raises(DatasetError) as refused:
        delete_dataset(wine.id)
    assert str(refused.value) == (
        f"'wine' is used by the queued run 'wine · label · first' (job {first.id}); cancel it or wait "
        "for it to end before deleting."
    )
    assert [d.id for d in list_datasets()] == [wine.id] and (wine.path / "data.parquet").is_file()

    second = queue(wine.id, "wine · label · second")
    assert job_store.claim_job(first.id, "cpu")
    with pytest.raises(DatasetError) as refused:
        delete_dataset(wine.id)
    assert str(refused.value) == (
        f"'wine' is used by the running run 'wine · label · first' (job {first.id}) and the queued run "
        f"'wine · label · second' (job {second.id}); cancel them or wait for them to end before deleting."
    )

    job_store.finish_job(first.id, "succeeded")
    jobs.cancel_job(second.id)
    delete_dataset(wine.id)
    assert list_datasets() == []


def test_the_cli_refuses_in_one_line(wine, studio_home: Path) -> None:
    job = queue(wine.id, "wine · label · cli")
    done = subprocess.run(
        [sys.executable, "-m", "studio", "datasets", "delete", wine.id],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "STUDIO_HOME": str(studio_home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"error: 'wine' is used by the queued run 'wine · label · cli' (job {job.id}); cancel it or wait "
        "for it to end before deleting.\n"
    )
    assert [d.id for d in list_datasets()] == [wine.id]


def test_a_job_queued_while_a_delete_runs_waits_for_it(wine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-use check and the removal hold the job store's write lock, so a job cannot be queued in
    between (and then lose its data set): it waits, and is queued once the delete has ended."""
    import threading
    import time

    inside, release = threading.Event(), threading.Event()
    real_rename = os.rename

    def slow_rename(src, dst):
        inside.set()
        release.wait(10)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", slow_rename)
    deleter = threading.Thread(target=delete_dataset, args=(wine.id,))
    deleter.start()
    assert inside.wait(10)
    queued: list[jobs.Job] = []
    submitter = threading.Thread(target=lambda: queued.append(queue(wine.id, "late")))
    submitter.start()
    time.sleep(0.5)
    assert queued == []  # waits for the delete's lock
    release.set()
    deleter.join(10)
    submitter.join(10)
    assert [job.name for job in queued] == ["late"] and list_datasets() == []
