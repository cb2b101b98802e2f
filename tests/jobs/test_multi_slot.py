"""Jobs on several devices (``training.devices``): the scheduler reserves that many slots at once, never
more than there are, and a real job trains with DDP on two CPU processes through submit, scheduler and
worker."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from studio import jobs
from studio.core.spec import RunSpec
from studio.jobs.executors.base import Slot
from studio.jobs.executors.local import LocalExecutor
from studio.jobs.scheduler import busy_slots, pick_slots, slot_names
from tests.jobs.jobhelpers import FAKE_WORKER, fake_runs, tiny_csv, wait_until

GPUS = [Slot("cuda:0", "0"), Slot("cuda:1", "1"), Slot("cuda:2", "2")]
CPUS = [Slot("cpu:0", ""), Slot("cpu:1", ""), Slot("cpu:2", "")]


def spec(name: str, devices: str = "1", epochs: int = 2, device: str = "cpu", **training) -> RunSpec:
    return RunSpec.from_dict(
        {
            "name": name,
            "task": "classification",
            "data": {"dataset_id": "ds-fake", "target": "label"},
            "training": {"epochs": epochs, "device": device, "devices": devices, **training},
        }
    )


# --------------------------------------------------------------------------- choosing slots
def test_two_devices_wait_for_two_free_slots_of_one_kind():
    assert pick_slots("cpu", "2", CPUS, {"cpu:0", "cpu:1"}) is None
    both = pick_slots("cpu", "2", CPUS, {"cpu:1"})
    assert both == Slot("cpu:0,cpu:2", "")
    assert slot_names(both.name) == ["cpu:0", "cpu:2"]
    gpus = pick_slots("auto", "2", GPUS + CPUS, {"cuda:0"})
    assert gpus == Slot("cuda:1,cuda:2", "1,2") and gpus.is_gpu  # the worker sees exactly those GPUs
    assert pick_slots("auto", "1", GPUS, set()) == GPUS[0]


def test_auto_takes_every_free_gpu_or_one_cpu_slot():
    assert pick_slots("auto", "auto", GPUS, {"cuda:1"}) == Slot("cuda:0,cuda:2", "0,2")
    assert pick_slots("cuda", "auto", GPUS, {"cuda:0", "cuda:1", "cuda:2"}) is None
    assert pick_slots("auto", "auto", CPUS, set()) == CPUS[0]  # no GPU: auto trains in one process


def test_more_devices_than_the_machine_has_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="asks for 4 devices, but this machine has 3 GPUs: set Devices to 3"):
        pick_slots("auto", "4", GPUS, set())
    with pytest.raises(ValueError, match="at most 3 CPU job.*STUDIO_CPU_SLOTS=3.*set Devices to 1"):
        pick_slots("cpu", "4", CPUS, set())


def test_busy_slots_count_each_slot_of_a_several_device_job():
    class Running:
        def __init__(self, device):
            self.device = device

    assert busy_slots([Running("cpu:0,cpu:2"), Running("cuda:1"), Running(None)]) == {
        "cpu:0",
        "cpu:2",
        "cuda:1",
    }


def test_a_several_device_worker_sees_all_its_gpus(jobs_home):
    executor = LocalExecutor(gpus=["0", "1", "2"], cpu_slots=1, keep_warm=False)
    env = executor.worker_env(Slot("cuda:0,cuda:2", "0,2"))
    assert env["CUDA_VISIBLE_DEVICES"] == "0,2" and env["STUDIO_JOB_SLOT"] == "cuda:0,cuda:2"


def test_ray_asks_one_gpu_or_cpu_per_device():
    from studio.jobs.executors.ray import entrypoint_resources

    assert entrypoint_resources(Slot("cuda:0,cuda:1", "")) == {
        "entrypoint_num_gpus": 2,
        "entrypoint_num_cpus": None,
    }
    assert entrypoint_resources(Slot("cuda:3", "")) == {"entrypoint_num_gpus": 1, "entrypoint_num_cpus": None}
    assert entrypoint_resources(Slot("cpu:0,cpu:1", "")) == {
        "entrypoint_num_gpus": None,
        "entrypoint_num_cpus": 2,
    }


# --------------------------------------------------------------------------- the scheduler, real processes
def _slots_in_use(done: list[jobs.Job], moment: float) -> list[str]:
    return [name for j in done if j.started_at <= moment < j.ended_at for name in slot_names(j.device)]


def test_a_two_slot_job_waits_for_two_and_one_slot_jobs_fill_in_only_beside_it(jobs_home, monkeypatch):
    monkeypatch.setenv("STUDIO_CPU_SLOTS", "3")
    # a and b take two of the three slots; wide (2 slots) must wait until a ends; late (1 slot), queued
    # after it, must not take the free slot wide waits for, and starts once b ends.
    a = jobs.submit_job(spec("fake epoch_seconds=0.4 a", epochs=5), start_scheduler=False)
    b = jobs.submit_job(spec("fake epoch_seconds=0.4 b", epochs=12), start_scheduler=False)
    wide = jobs.submit_job(spec("fake epoch_seconds=0.4 wide", devices="2", epochs=12), start_scheduler=False)
    late = jobs.submit_job(spec("fake epoch_seconds=0.1 late", epochs=2), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)

    ids = [a.id, b.id, wide.id, late.id]
    wait_until(lambda: all(not jobs.get_job(i).is_active for i in ids), 60)
    done = [jobs.get_job(i) for i in ids]
    a, b, wide, late = done

    assert all(j.state == jobs.SUCCEEDED for j in done), [(j.name, j.state, j.reason) for j in done]
    assert len(slot_names(wide.device)) == 2 and set(slot_names(wide.device)) <= {"cpu:0", "cpu:1", "cpu:2"}
    assert wide.started_at >= a.ended_at  # it waited until two slots were free
    assert late.started_at >= b.ended_at  # it did not jump ahead into the slot wide waited for
    assert late.started_at < wide.ended_at  # once b's slot was free it ran beside wide
    for moment in sorted({j.started_at + 0.01 for j in done} | {j.ended_at - 0.01 for j in done}):
        used = _slots_in_use(done, moment)
        assert len(used) <= 3 and len(used) == len(set(used)), (moment, used)  # never over-committed
    started = {
        line.split()[0]: line.split()[2] for line in (jobs_home / "fake_runs.log").read_text().splitlines()
    }
    assert started[wide.id] == wide.device  # the worker was told both slots
    assert sorted(fake_runs(jobs_home)) == sorted(ids)


def test_a_job_asking_more_devices_than_slots_fails_with_the_reason(jobs_home, monkeypatch):
    monkeypatch.setenv("STUDIO_CPU_SLOTS", "2")
    job = jobs.submit_job(spec("fake", devices="3"), start_scheduler=False)
    jobs.ensure_scheduler(worker_cmd=FAKE_WORKER)
    ended = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=20)
    assert ended.state == jobs.FAILED and "STUDIO_CPU_SLOTS=2" in ended.reason
    assert fake_runs(jobs_home) == []


def test_a_real_job_on_two_cpu_processes_trains_logs_once_and_bundles(jobs_home, tmp_path, monkeypatch):
    from studio import tracking
    from studio.bundle import load_bundle
    from studio.data import add_csv

    monkeypatch.setenv("STUDIO_CPU_SLOTS", "2")
    # a job on several slots always gets fresh workers: warm ones would import torch for nothing
    monkeypatch.setenv("STUDIO_STANDBY_WORKER", "0")
    dataset = add_csv(tiny_csv(tmp_path, rows=120))
    job_spec = RunSpec.from_dict(
        {
            "name": "two processes",
            "task": "classification",
            "data": {"dataset_id": dataset.id, "target": "y"},
            "training": {"epochs": 3, "batch_size": 16, "devices": 2, "device": "cpu"},
            "early_stopping": {"enabled": False},
        }
    )
    job = jobs.submit_job(job_spec)
    done = wait_until(lambda: not (j := jobs.get_job(job.id)).is_active and j, timeout=150)

    assert done.state == jobs.SUCCEEDED, f"{done.reason}\n{done.log_path.read_text()}"
    assert sorted(slot_names(done.device)) == ["cpu:0", "cpu:1"]
    assert done.epoch == 3 and done.fraction == pytest.approx(1.0)
    run = tracking.get_run(done.mlflow_run_id)
    assert run.status == "FINISHED" and run.tags[tracking.TAG_DEVICE] == "CPU, 2 processes"
    client = tracking.client()
    assert [m.value for m in client.get_metric_history(done.mlflow_run_id, "epoch")] == [1.0, 2.0, 3.0]
    assert len(client.get_metric_history(done.mlflow_run_id, "test/accuracy")) == 1
    assert zipfile.is_zipfile(done.bundle_path)
    with load_bundle(done.bundle_path) as loaded:
        assert len(loaded.predict([{"a": 0.9, "b": 0.8}, {"a": 0.1, "b": 0.05}])) == 2
    assert not any(Path(done.log_path.parent).glob("*.ckpt"))  # checkpoints removed after success
