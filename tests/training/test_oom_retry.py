"""Running out of memory: the run retries once from its last checkpoint with half the batch size and
two accumulated mini-batches per step, says so, and a second time fails plainly. The error is injected
on the CPU with the test-only switch ``STUDIO_TEST_OOM_AT_STEP``; the ``gpu`` test provokes a real one."""

from __future__ import annotations

import pytest
import torch

from studio import tracking
from studio.core.errors import TrainingError
from studio.core.spec import RunSpec
from studio.engine.training import train


def spec_for(dataset_id: str, **changes) -> RunSpec:
    spec = RunSpec.from_dict(
        {
            "name": "memory",
            "task": "classification",
            "data": {"dataset_id": dataset_id, "target": "label"},
            "training": {"epochs": 5, "batch_size": 16},
            "early_stopping": {"enabled": False},
        }
    )
    return spec.with_changes(**changes) if changes else spec


@pytest.fixture
def every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_CHECKPOINT_SECONDS", "0")


def steps_per_epoch(run_id: str) -> int:
    return int(tracking.get_run(run_id).tags[tracking.TAG_STEPS_PER_EPOCH])


def test_out_of_memory_retries_once_from_the_last_checkpoint_with_half_the_batch(
    tiny_dataset, tmp_path, monkeypatch: pytest.MonkeyPatch, every_epoch
) -> None:
    # 240 rows: 144 train, 9 steps of 16 per epoch; step 20 is in epoch 3, after epoch 2's checkpoint.
    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "20")
    result = train(spec_for(tiny_dataset.id), checkpoint_dir=tmp_path / "checkpoints")

    note = (
        "Ran out of memory at batch size 16; continued from epoch 3 with batch size 8 × 2 accumulated steps."
    )
    assert result.status == "FINISHED" and result.retry_note == note
    assert result.note is None  # not a kept-epoch note: the run did finish all its epochs
    assert result.epochs_run == 5 and result.test_metrics["test/accuracy"] > 0.7
    run = tracking.get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.tags[tracking.TAG_NOTE] == note
    assert run.tags["studio.batch_size"] == "8 × 2 accumulated steps"
    assert run.params["training.batch_size"] == "16"  # what was asked stays on record
    history = tracking.metric_history(result.run_id)
    for key, points in history.items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), key  # nothing logged twice
    per_epoch = steps_per_epoch(result.run_id)
    assert [step for step, _ in history["epoch"]] == [per_epoch * e for e in range(1, 6)]  # same step count


def test_out_of_memory_before_any_checkpoint_starts_again_from_the_beginning(
    tiny_dataset, tmp_path, monkeypatch: pytest.MonkeyPatch, every_epoch
) -> None:
    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "0")  # the very first batch
    result = train(
        spec_for(tiny_dataset.id, **{"training.epochs": 2}), checkpoint_dir=tmp_path / "checkpoints"
    )
    assert result.retry_note == (
        "Ran out of memory at batch size 16; started again from the beginning with batch size 8 × 2 "
        "accumulated steps."
    )


def test_running_out_of_memory_again_fails_with_the_plain_message(
    tiny_dataset, tmp_path, monkeypatch: pytest.MonkeyPatch, every_epoch
) -> None:
    monkeypatch.setenv("STUDIO_TEST_OOM_AT_STEP", "20")
    monkeypatch.setenv("STUDIO_TEST_OOM_REPEAT", "1")
    with pytest.raises(TrainingError) as caught:
        train(spec_for(tiny_dataset.id), checkpoint_dir=tmp_path / "checkpoints")
    assert str(caught.value) == (
        "The machine ran out of memory again after retrying with half the batch size (8 × 2 accumulated "
        "steps): lower the batch size, use fewer columns or close other programs."
    )
    (run,) = tracking.list_runs(tiny_dataset.id)
    assert run.status == "FAILED" and run.tags[tracking.TAG_FAILURE] == str(caught.value)


def test_two_accumulated_half_batches_make_the_step_of_one_whole_batch() -> None:
    """The module's gradient accumulation (Lightning's ``accumulate_grad_batches`` does not apply to
    manual optimisation): one SGD step from 2 × 4 rows equals one from 8 rows."""
    from lightning_modules.tabular.module import TabularLightningModule
    from studio.core.spec import OptimizerSpec, SchedulerSpec

    def module(accumulate: int) -> TabularLightningModule:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)
        m = TabularLightningModule(
            net,
            "classification",
            2,
            OptimizerSpec(name="sgd", learning_rate=0.1, momentum=0.0),
            SchedulerSpec(name="none"),
            "val/loss",
            1,
            accumulate=accumulate,
        )
        return m

    torch.manual_seed(1)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    whole, halves = module(1), module(2)
    for m, parts in ((whole, [(x, y)]), (halves, [(x[:4], y[:4]), (x[4:], y[4:])])):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        for i, (xs, ys) in enumerate(parts):
            out = m.net(xs)
            m._step(optimizer, None, m._loss(out, ys), out, ys, plain=True, last=i == len(parts) - 1)
        assert m.optimizer_steps == 1 and len(m.pop_step_losses()) == 1
    for a, b in zip(whole.net.parameters(), halves.net.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_cuda_out_of_memory_is_retried_with_half_the_batch(
    tiny_dataset, tmp_path, every_epoch
) -> None:
    """A real ``torch.cuda.OutOfMemoryError``: the process may use only a little more GPU memory
    (``set_per_process_memory_fraction``) than a run at batch 32768 needed, measured first; at 65536
    the activations (which dominate for this narrow, deep network) need about twice as much."""
    from studio.data import add_csv
    from tests.training.conftest import make_table

    path = tmp_path / "long.csv"
    make_table(n=120_000).to_csv(path, index=False)
    dataset = add_csv(path, name="long")

    def wide(batch_size: int, epochs: int) -> RunSpec:
        return spec_for(
            dataset.id,
            **{
                "training.device": "cuda",
                "training.epochs": epochs,
                "training.batch_size": batch_size,
                "architecture.params": {"hidden_layers": 6, "width": 1024, "dropout": 0.0},
            },
        )

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(0)
    train(wide(32768, 1), checkpoint_dir=tmp_path / "calibration")
    half_peak = torch.cuda.max_memory_reserved(0)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.3 * half_peak / total), 0)
    try:
        result = train(wide(65536, 2), checkpoint_dir=tmp_path / "checkpoints")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    print(f"peak at batch 32768: {half_peak / 2**30:.2f} GiB; {result.retry_note}")
    assert result.status == "FINISHED" and result.retry_note is not None
    assert result.retry_note.startswith("Ran out of GPU memory at batch size 65536;")
    assert result.retry_note.endswith("with batch size 32768 × 2 accumulated steps.")
