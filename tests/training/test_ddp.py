"""Several devices for one run (``training.devices``): Lightning's DDP over gloo with two CPU processes,
real training, a real MLflow store. Rank 0 is the test's own process; the other rank is a
``python -m studio.engine.ddp`` process it starts."""

from __future__ import annotations

import math
import os
import zipfile

import psutil
import pytest
import torch

from lightning_modules.tabular.data import EvalShard, ShardedBatches, sharded_steps
from studio import tracking
from studio.bundle import load_bundle
from studio.core.errors import SpecError, TrainingError
from studio.core.spec import RunSpec
from studio.engine.training import TrainHooks, TrainingCancelled, evaluate_chosen_model, train

EPOCHS = 4


def make_spec(dataset_id: str, devices: str | int = 2, **changes) -> RunSpec:
    spec = RunSpec.from_dict(
        {
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "label"},
            "training": {"epochs": EPOCHS, "batch_size": 32, "devices": devices, "device": "cpu"},
            "early_stopping": {"patience": 50},
        }
    )
    return spec.with_changes(**changes) if changes else spec


def followers() -> list[psutil.Process]:
    """Training processes this test process started that are still alive (other tests' children that
    ended unreaped, zombies, are skipped: their command line cannot be read)."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "studio.engine.ddp_rank" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            continue
    return alive


class Recorder(TrainHooks):
    def __init__(self, stop_at_epoch: int | None = None):
        self.run_id = None
        self.progress = []
        self.stop_at_epoch = stop_at_epoch

    def on_run_started(self, run_id, experiment_id):
        self.run_id = run_id

    def on_progress(self, progress):
        self.progress.append(progress)

    def should_stop(self):
        return self.stop_at_epoch is not None and any(p.epoch >= self.stop_at_epoch for p in self.progress)


def test_two_processes_train_one_run_logged_once_with_one_bundle(tiny_dataset, tmp_path):
    hooks = Recorder()
    bundle = tmp_path / "ddp.zip"
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    result = train(make_spec(tiny_dataset.id), hooks=hooks, bundle_out=bundle)
    # Lightning shares the CPU threads among the processes; this process gets its own back afterwards.
    assert (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")) == (threads, omp)

    assert result.status == "FINISHED" and result.epochs_run == EPOCHS
    assert hooks.progress and hooks.progress[-1].epoch == EPOCHS
    run = tracking.get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.tags[tracking.TAG_DEVICE] == "CPU, 2 processes"
    client = tracking.client()
    # Every epoch's metrics exactly once (rank 0 logs; the other rank logs nothing).
    epochs = [m.value for m in client.get_metric_history(result.run_id, "epoch")]
    assert epochs == [float(e) for e in range(1, EPOCHS + 1)]
    val_steps = [m.step for m in client.get_metric_history(result.run_id, "val/loss")]
    assert len(val_steps) == EPOCHS == len(set(val_steps))
    train_steps = [m.step for m in client.get_metric_history(result.run_id, "train/loss")]
    assert len(train_steps) == len(set(train_steps))
    # The same steps per epoch as one device: every update still learns from a whole batch of rows.
    assert run.tags[tracking.TAG_STEPS_PER_EPOCH] == str(val_steps[0])
    assert len(client.get_metric_history(result.run_id, "test/accuracy")) == 1
    assert result.test_metrics["test/accuracy"] > 0.75
    assert not followers()  # the other rank has exited

    # The test metrics cover every test row, not rank 0's half: a single-process evaluation of the
    # bundled model on the whole test split gives the same numbers.
    whole = evaluate_chosen_model(make_spec(tiny_dataset.id, devices=1), bundle, result.run_id)
    for name, value in whole.test_metrics.items():
        assert result.test_metrics[name] == pytest.approx(value, abs=1e-5), name

    # The bundle is a normal one: same files as a single-device run's, loads and predicts.
    single = train(
        make_spec(tiny_dataset.id, devices=1, **{"training.epochs": 1}), bundle_out=tmp_path / "one.zip"
    )
    with zipfile.ZipFile(bundle) as ddp_zip, zipfile.ZipFile(single.bundle_path) as one_zip:
        assert sorted(ddp_zip.namelist()) == sorted(one_zip.namelist())
    from tests.training.conftest import make_table

    rows = make_table(20, seed=3).drop(columns=["label"])
    with load_bundle(bundle) as loaded:
        predicted = loaded.predict(rows)
    assert len(predicted) == 20 and set(predicted["predicted_label"]) <= {"yes", "no"}


def test_more_devices_than_rows_allow_is_refused_in_plain_words(tiny_dataset):
    spec = make_spec(tiny_dataset.id, devices=20)  # batch of 32 rows: fewer than two rows per process
    with pytest.raises(TrainingError, match="too few to share among 20 devices"):
        train(spec)


@pytest.mark.parametrize("rows", [7, 10, 64, 2051])
def test_validation_shares_cover_every_row_once_in_as_many_batches(rows):
    values = torch.arange(rows)
    shares = []
    for rank in range(2):
        mine = torch.tensor_split(values, 2)[rank]
        share = EvalShard((mine,), batches=math.ceil(math.ceil(rows / 2) / 1024))
        shares.append([batch[0] for batch in share])
    assert len(shares[0]) == len(shares[1])  # every process takes the same number of steps
    seen = torch.cat([b for share in shares for b in share])
    assert sorted(seen.tolist()) == list(range(rows))


def test_training_shares_split_each_batch_and_use_each_row_once():
    rows, batch, world = 103, 16, 2
    tensors = (torch.arange(rows),)
    ranks = [ShardedBatches(tensors, batch, rank, world, seed=5) for rank in range(world)]
    epochs = [list(iter(r)) for r in ranks]
    assert len(epochs[0]) == len(epochs[1]) == sharded_steps(rows, batch, world) == 7  # 6 full + 7 rows
    for step in range(7):
        together = torch.cat([epochs[r][step][0] for r in range(world)])
        assert len(together) == (batch if step < 6 else 7)
        assert min(len(epochs[r][step][0]) for r in range(world)) >= 2
    used = torch.cat([b[0] for e in epochs for b in e])
    assert len(set(used.tolist())) == len(used) == 6 * 16 + 7
    assert sharded_steps(33, 16, 2) == 2  # a last batch of one row per process is left out


@pytest.mark.parametrize(("devices", "expected"), [("1", "1"), (2, "2"), (" Auto ", "auto"), ("4", "4")])
def test_devices_setting_accepts_auto_or_a_count(devices, expected):
    assert make_spec("x", devices=devices).training.devices == expected


@pytest.mark.parametrize("devices", ["0", "-1", "two", "1.5", "", "65"])
def test_devices_setting_refuses_other_values_in_plain_words(devices):
    with pytest.raises(SpecError, match="'auto' \\(every free GPU\\) or a whole number of devices"):
        make_spec("x", devices=devices)


def test_one_named_gpu_cannot_be_several_devices():
    with pytest.raises(SpecError, match="names one GPU, but devices asks for 2"):
        make_spec("x", devices=2, **{"training.device": "auto"}).with_changes(**{"training.device": "cuda:1"})


def test_asking_more_gpus_than_there_are_says_how_to_fix(monkeypatch):
    from studio.engine.ddp import world_size

    with pytest.raises(
        TrainingError, match="asks for 4 devices, but only 1 GPU is available.*set Devices to 1"
    ):
        world_size("4", gpus=1)
    assert world_size("auto", gpus=3) == 3
    assert world_size("auto", gpus=None) == 1  # on a CPU, 'auto' is one process
    assert world_size("2", gpus=None) == 2


def test_a_cancel_stops_every_process_and_the_run_resumes_from_its_checkpoint(
    tiny_dataset, tmp_path, monkeypatch
):
    """A cancel mid-run stops every process and marks the run KILLED; every rank took part in saving
    (rank 0 writes) and every rank continues from the saved file. (One two-process run serves both the
    cancel's checks and the resume's: each start of the other rank imports torch and Lightning.)"""
    from studio.engine.training import latest_checkpoint

    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")  # a checkpoint at the end of every epoch
    spec = make_spec(tiny_dataset.id, **{"training.epochs": 6})
    folder = tmp_path / "checkpoints"
    stopped = Recorder(stop_at_epoch=3)
    with pytest.raises(TrainingCancelled):
        train(spec, checkpoint_dir=folder, hooks=stopped)
    assert stopped.progress[-1].epoch < 6  # stopped mid-run
    assert not followers()
    assert tracking.get_run(stopped.run_id).status == "KILLED"
    saved = latest_checkpoint(folder)
    assert saved is not None and saved.epoch >= 2
    assert [p.name for p in folder.iterdir()] == [saved.path.name]  # rank 0's file only

    resumed = train(spec, checkpoint_dir=folder, resume_run_id=stopped.run_id)

    assert resumed.run_id == stopped.run_id and resumed.epochs_run == 6
    epochs = [m.value for m in tracking.client().get_metric_history(resumed.run_id, "epoch")]
    assert epochs == [float(e) for e in range(1, 7)]  # each epoch once, across the stop
    assert not followers()


def test_a_data_kind_that_cannot_be_shared_is_refused_in_plain_words():
    from studio.engine.ddp import share_data

    class UnsharedData:  # a DataModule without world_size / check_world_size (e.g. a new data kind)
        steps_per_epoch = 3

    with pytest.raises(TrainingError, match="cannot be trained on several devices yet; set Devices to 1"):
        share_data(UnsharedData(), 2)
    share_data(UnsharedData(), 1)  # one device: nothing to share


# --------------------------------------------------------------------------- real GPUs (pytest -m gpu)
def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_one_run_over_nccl(tiny_dataset, tmp_path):
    bundle = tmp_path / "gpus.zip"
    spec = make_spec(tiny_dataset.id, devices=2, **{"training.device": "cuda"})
    result = train(spec, bundle_out=bundle)

    assert result.status == "FINISHED" and result.epochs_run == EPOCHS
    assert tracking.get_run(result.run_id).tags[tracking.TAG_DEVICE].startswith("2 GPUs: ")
    epochs = [m.value for m in tracking.client().get_metric_history(result.run_id, "epoch")]
    assert epochs == [float(e) for e in range(1, EPOCHS + 1)]
    whole = evaluate_chosen_model(make_spec(tiny_dataset.id, devices=1), bundle, result.run_id)
    for name, value in whole.test_metrics.items():
        assert result.test_metrics[name] == pytest.approx(value, abs=1e-4), name
    assert not followers()


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() < 1, reason="needs a CUDA GPU")
def test_auto_uses_every_visible_gpu_and_too_many_is_refused(tiny_dataset):
    count = gpu_count()
    spec = make_spec(tiny_dataset.id, devices="auto", **{"training.device": "auto"})
    result = train(spec)
    device = tracking.get_run(result.run_id).tags[tracking.TAG_DEVICE]
    assert device.startswith(f"{count} GPUs: " if count > 1 else "GPU 0")
    too_many = make_spec(tiny_dataset.id, devices=count + 1, **{"training.device": "auto"})
    with pytest.raises(TrainingError, match=f"asks for {count + 1} devices, but only {count} GPU"):
        train(too_many)
