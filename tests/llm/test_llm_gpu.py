"""QLoRA (a 4-bit base model through bitsandbytes), bfloat16 and two GPUs for fine-tuning. On a machine
without a CUDA GPU (CI, here) a 4-bit run is refused in one sentence before a run exists, by the engine and
by the Train form, and the memory estimate counts 4-bit weights; bitsandbytes is never needed. The runs
themselves need GPUs: ``pytest -m gpu`` (skipped without one)."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
import torch

from tests.llm.test_llm import QWEN_05B, _no_runs, _spec
from tests.llm.tiny import PAIRS, build_model, write_pairs_csv


def test_the_memory_estimate_counts_4_bit_weights_for_the_blocks_and_16_bits_for_the_embeddings():
    from studio.modalities.llm.models import NF4_BYTES, estimate_memory, parameter_count, target_modules

    kw = {
        "method": "lora",
        "rank": 16,
        "targets": target_modules(QWEN_05B),
        "batch_size": 8,
        "length": 512,
        "checkpointing": True,
        "weight_bytes": 2,
    }
    bf16, nf4 = estimate_memory(QWEN_05B, **kw), estimate_memory(QWEN_05B, four_bit=True, **kw)
    embeddings = 151936 * 896  # tied: one matrix, left in 16 bits by bitsandbytes
    blocks = parameter_count(QWEN_05B) - embeddings
    assert nf4.weights == int(blocks * NF4_BYTES + embeddings * 2)
    assert 0.25 * bf16.weights < nf4.weights < 0.5 * bf16.weights
    assert nf4.total == sum(nf4.parts().values())
    assert {k: v for k, v in nf4.parts().items() if k != "weights"} == {
        k: v for k, v in bf16.parts().items() if k != "weights"
    }


@pytest.mark.parametrize(
    ("params", "cuda", "devices", "words"),
    [
        ({"method": "lora"}, False, 1, "needs a CUDA GPU"),
        ({"method": "full"}, True, 1, "trains a LoRA adapter only"),
        ({"method": "lora", "merged": True}, True, 1, "cannot be bundled merged"),
        ({"method": "lora"}, True, 2, "trains on one GPU for now"),
    ],
)
def test_a_4_bit_base_model_says_why_it_cannot_be_used_here(params, cuda, devices, words):
    from studio.modalities.llm.models import four_bit_problem

    assert four_bit_problem(params, cuda=cuda, devices=devices) is None  # not asked: nothing to say
    problem = four_bit_problem({**params, "load_in_4bit": True}, cuda=cuda, devices=devices)
    assert problem is not None and words in problem and "\n" not in problem


def test_without_bitsandbytes_a_4_bit_run_names_the_package(monkeypatch):
    from studio.modalities.llm import models

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    problem = models.four_bit_problem({"method": "lora", "load_in_4bit": True}, cuda=True)
    assert "needs the bitsandbytes package" in problem and "requirements-gpu.txt" in problem


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("llm-gpu") / "tiny-llama")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_4_bit_run_on_a_cpu_is_refused_by_the_form_and_the_engine_before_a_run_exists(
    studio_home, tmp_path, tiny
):
    from studio.core.errors import StudioError
    from studio.data import add_data_file
    from studio.engine.training import train
    from studio.modalities.llm.views import FORM

    info = add_data_file(write_pairs_csv(tmp_path / "pairs.csv"))
    spec = _spec(info.id, "response", tiny, **{"architecture.params.load_in_4bit": True})
    (blocker,) = FORM.blockers(spec)
    assert "needs a CUDA GPU" in blocker
    with pytest.raises(StudioError, match="needs a CUDA GPU") as err:
        train(spec)
    assert "\n" not in str(err.value) and _no_runs() == 0


# --------------------------------------------------------------------------- real GPUs (pytest -m gpu)
def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _learnt(bundle_path) -> float:
    from lightning_modules.llm.module import exact_match
    from studio.bundle.reader import load_bundle

    with load_bundle(bundle_path) as bundle:
        answers = bundle.model.predict(pd.DataFrame({"prompt": [p for p, _ in PAIRS]}))["answer"].tolist()
    return sum(exact_match(a, r) for a, (_, r) in zip(answers, PAIRS, strict=True)) / len(PAIRS)


def _gpu_run(tmp_path, tiny, **changes):
    from studio import tracking
    from studio.data import add_data_file
    from studio.engine.training import train

    info = add_data_file(write_pairs_csv(tmp_path / "pairs.csv", repeat=2))
    spec = _spec(
        info.id,
        "response",
        tiny,
        **{"training.device": "auto", "training.precision": "bf16-mixed", **changes},
    )
    torch.cuda.reset_peak_memory_stats()
    result = train(spec, bundle_out=tmp_path / "model.zip")
    assert result.status == "FINISHED"
    return result, tracking.get_run(result.run_id)


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 1, reason="needs a CUDA GPU")
def test_a_lora_run_on_a_gpu_trains_in_bfloat16_and_learns(studio_home, tmp_path, tiny):
    from studio import tracking

    result, run = _gpu_run(tmp_path, tiny)
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert run.tags[tracking.TAG_PRECISION] == expected and run.tags[tracking.TAG_DEVICE].startswith("GPU 0")
    assert _learnt(tmp_path / "model.zip") >= 0.9


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 1, reason="needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_trains_a_4_bit_base_and_its_adapter_answers(studio_home, tmp_path, tiny):
    """The base's linear layers are 4-bit (bitsandbytes' Linear4bit), only the adapter trains, and the
    adapter bundle (loaded on a 16/32-bit base) answers the instruction set."""
    from studio.data import add_data_file, load_profile, load_table
    from studio.modalities import modality

    info = add_data_file(write_pairs_csv(tmp_path / "few.csv"))
    spec = _spec(
        info.id, "response", tiny, **{"training.device": "auto", "architecture.params.load_in_4bit": True}
    )
    prepared = modality("llm").prepare(spec, info, load_table(info.id), load_profile(info.id))
    module = prepared.lightning_module(spec, prepared.data.steps_per_epoch, 1)
    kinds = {type(m).__name__ for m in module.net.modules()}
    assert "Linear4bit" in kinds
    assert all("lora_" in n for n, p in module.net.named_parameters() if p.requires_grad)
    del module, prepared
    result, run = _gpu_run(tmp_path, tiny, **{"architecture.params.load_in_4bit": True})
    assert _learnt(tmp_path / "model.zip") >= 0.8
    print(f"QLoRA tiny run: peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_fine_tune_one_run(studio_home, tmp_path, tiny):
    from studio import tracking

    result, run = _gpu_run(tmp_path, tiny, **{"training.devices": "2"})
    assert run.tags[tracking.TAG_DEVICE].startswith("2 GPUs")
    assert _learnt(tmp_path / "model.zip") >= 0.9
