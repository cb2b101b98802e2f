"""Fine-tuning a language model on several devices (``training.devices``): Lightning's DDP over gloo with
two CPU processes (the test's own process is rank 0), the tiny Llama the tests build, a real MLflow
store; and the shares of the batches on their own (fast)."""

from __future__ import annotations

import zipfile

import pandas as pd
import pytest

from tests.llm.tiny import PAIRS, write_pairs_csv


def _items(n: int) -> list:
    from lightning_modules.llm.module import Encoded

    return [Encoded([i + 10, 3], [i + 10, 3], [i + 10], f"p{i}", f"r{i}") for i in range(n)]


@pytest.mark.parametrize(("n", "batch_size", "world"), [(20, 4, 2), (23, 4, 2), (9, 3, 3), (7, 8, 2)])
def test_every_process_takes_its_share_of_each_batch_and_each_example_once(n, batch_size, world):
    from lightning_modules.llm.module import Batches

    def first_ids(batches: Batches) -> list[list[int]]:
        return [[int(i) - 10 for i in batch["input_ids"][:, 0]] if batch else [] for batch in batches]

    items = _items(n)
    one = Batches(items, batch_size, 0, shuffle=True, seed=5)
    one.sampler.set_epoch(3)
    whole = first_ids(one)
    shares = []
    for rank in range(world):
        mine = Batches(items, batch_size, 0, shuffle=True, seed=5, rank=rank, world=world)
        mine.sampler.set_epoch(3)
        shares.append(first_ids(mine))
    assert len({len(s) for s in shares}) == 1  # the same number of steps on every process
    for step, parts in enumerate(zip(*shares, strict=True)):  # each step: the single process's batch, shared
        assert all(parts) and sum(parts, []) == whole[step]
    used = sum((sum(s, []) for s in shares), [])
    assert len(used) == len(set(used)) and len(used) >= n - world + 1  # a last sliver may be left out
    evaluated = [
        first_ids(Batches(items, batch_size, 0, shuffle=False, seed=5, rank=r, world=world))
        for r in range(world)
    ]
    assert len({len(s) for s in evaluated}) == 1
    assert sorted(sum((sum(s, []) for s in evaluated), [])) == list(range(n))  # every example once


def test_too_few_examples_for_the_devices_are_refused_in_plain_words():
    from lightning_modules.llm.module import LLMData
    from studio.core.errors import TrainingError
    from studio.engine.ddp import share_data

    data = LLMData({"train": _items(6), "val": _items(1), "test": _items(1)}, 2, 0, 0)
    share_data(data, 2)
    assert data.steps_per_epoch == 3
    with pytest.raises(
        TrainingError, match=r"^6 training examples in batches of 2 are too few to share among 4"
    ):
        share_data(data, 4)


@pytest.mark.slow
def test_two_processes_fine_tune_one_run_logged_once_with_one_adapter(studio_home, tmp_path):
    """Two CPU processes: one MLflow run (each epoch's curves once, the device tag says so), the loss
    falls, the held-out answers and the test scores cover every test example, the bundle holds the
    adapter once and answers, and the other process has exited."""
    import torch

    from studio import tracking
    from studio.bundle.reader import load_bundle
    from studio.data import add_data_file
    from studio.engine.training import train
    from tests.llm.test_llm import _spec
    from tests.llm.tiny import build_model
    from tests.training.test_ddp import followers

    base = build_model(tmp_path / "tiny-llama")
    info = add_data_file(write_pairs_csv(tmp_path / "pairs.csv", repeat=2))
    epochs = 6
    spec = _spec(info.id, "response", base, **{"training.epochs": epochs, "training.devices": "2"})
    result = train(spec, bundle_out=tmp_path / "model.zip")

    assert result.status == "FINISHED" and result.epochs_run == epochs
    run = tracking.get_run(result.run_id)
    assert run.tags[tracking.TAG_DEVICE] == "CPU, 2 processes"
    client = tracking.client()
    assert [m.value for m in client.get_metric_history(result.run_id, "epoch")] == [
        float(e) for e in range(1, epochs + 1)
    ]
    # 36 training examples in batches of 4 (2 per process): 9 updates per epoch, as on one process
    assert run.tags[tracking.TAG_STEPS_PER_EPOCH] == "9"
    losses = [m.value for m in client.get_metric_history(result.run_id, "train/loss")]
    assert len(losses) == 9 * epochs and losses[-1] < 0.7 * losses[0], losses
    assert len(client.get_metric_history(result.run_id, "val/perplexity")) == epochs
    assert {"test/exact_match", "test/token_f1", "test/perplexity"} <= set(result.test_metrics)
    assert "llm/test_answers.json" in [a.path for a in client.list_artifacts(result.run_id, "llm")]
    assert not followers()

    with zipfile.ZipFile(tmp_path / "model.zip") as zf:
        weights = [n for n in zf.namelist() if n.endswith("artifacts/weights.pt")]
        with zf.open(weights[0]) as f:
            adapter = torch.load(f, weights_only=True)
    assert len(weights) == 1 and adapter and all("lora_" in name for name in adapter)
    with load_bundle(tmp_path / "model.zip") as bundle:
        answers = bundle.model.predict(pd.DataFrame({"prompt": [p for p, _ in PAIRS[:4]]}))["answer"].tolist()
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
