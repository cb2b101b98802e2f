"""LoRA fine-tuning throughput: the studio's whole run (engine, Lightning module, callbacks, MLflow
logging) against a bare ``transformers`` + ``peft`` + PyTorch loop on the same model, data and batch.

Both fine-tune the same Llama-architecture model (built here from a config, random weights: only speed is
measured; or ``--model FOLDER`` for a real one) with the same LoRA settings, examples, batch size,
optimiser (AdamW) and seed. Tokens per second count every non-padding token of the training batches and
only the training steps (the studio's ``train/tokens_per_second``, logged each epoch, leaves out its
validation and the held-out prompts' answers; the bare loop times its steps alike); the medians over the
epochs after the first are compared (the bare loop runs before and after the studio, so a drifting load
favours neither). Also prints the studio's memory estimate beside the measured peak
(``torch.cuda.max_memory_allocated`` on a GPU, the process's peak resident memory on a CPU).

    python bench/llm_throughput.py [--model FOLDER] [--examples 256] [--epochs 3] [--batch-size 8]
                                   [--length 128] [--device cpu|cuda] [--tiny]

``--tiny``: the tests' 2-layer model and a few examples, for CI (``tests/test_bench.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(folder: Path, tiny: bool) -> Path:
    """The tests' tiny Llama (``--tiny``) or a larger one (hidden size 512, 8 layers) with the same tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.llm.tiny import build_model as tiny_model
    from tests.llm.tiny import build_tokenizer

    if tiny:
        return tiny_model(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def examples_csv(path: Path, n: int, length: int, seed: int = 0) -> Path:
    """``n`` prompt/response pairs of random words from the tokenizer's vocabulary (prompt: 3/4 of
    ``length`` words, answer: the rest), so every batch has about ``length`` tokens per example."""
    import pandas as pd

    from tests.llm.tiny import words

    vocab = words()
    rng = random.Random(seed)
    prompt_words, answer_words = max(1, 3 * length // 4 - 12), max(1, length // 4)
    rows = [
        {
            "prompt": " ".join(rng.choices(vocab, k=prompt_words)),
            "response": " ".join(rng.choices(vocab, k=answer_words)),
        }
        for _ in range(n)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def bare_loop(
    folder: Path,
    csv: Path,
    params: dict,
    batch_size: int,
    epochs: int,
    lr: float,
    device: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> list[float]:
    """The same fine-tuning with transformers + peft + a PyTorch loop: tokens/s of each epoch."""
    import pandas as pd
    import torch

    from lightning_modules.llm.module import collate, encode_example, load_model, load_tokenizer
    from studio.modalities.llm.modality import split_indices
    from studio.modalities.llm.models import read_config, target_modules

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(folder)
    frame = pd.read_csv(csv)
    encoded = [
        encode_example(tokenizer, [{"role": "user", "content": p}], a, params["max_length"])
        for p, a in zip(frame["prompt"], frame["response"], strict=True)
    ]
    train = [encoded[i] for i in split_indices(len(encoded), val_fraction, test_fraction, seed)["train"]]
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    model = load_model(
        folder,
        params,
        bf16_weights=bf16,
        targets=target_modules(read_config(folder), params["target_modules"]),
    ).to(device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=lambda b: collate(b, tokenizer.pad_token_id),
    )
    rates = []
    for _ in range(epochs):
        tokens, started = 0, time.perf_counter()
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
            float(loss.detach())  # the studio reads each step's loss too
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(tokens / (time.perf_counter() - started))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a causal LM folder (default: a Llama built here)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.examples, args.epochs, args.batch_size, args.length = 24, 2, 4, 16

    import mlflow
    import torch

    from studio.core.spec import RunSpec
    from studio.data import add_data_file
    from studio.engine.training import train

    with tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
        # its own studio folder and MLflow store (run straight from a shell, not only under the tests)
        os.environ.setdefault("STUDIO_HOME", f"{tmp}/home")
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns/mlflow.db")
        folder = Path(args.model) if args.model else build_model(Path(tmp) / "model", args.tiny)
        csv = examples_csv(Path(tmp) / "examples.csv", args.examples, args.length)
        params = {
            "base_model": str(folder),
            "rank": 16,
            "alpha": 32.0,
            "lora_dropout": 0.0,
            "max_length": 2 * args.length,
            "sample_prompts": 0,
            "max_new_tokens": 4,
        }
        spec = RunSpec.from_dict(
            {
                "task": "llm_finetune",
                "data": {
                    "dataset_id": add_data_file(csv).id,
                    "target": "response",
                    "val_fraction": 0.05,
                    "test_fraction": 0.05,
                },
                "architecture": {"name": "lora", "params": params},
                "optimizer": {"learning_rate": 1e-4},
                "scheduler": {"name": "none"},
                "training": {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device},
                "early_stopping": {"enabled": False},
            }
        )
        full = spec.architecture.params
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        bare = bare_loop(
            folder, csv, full, args.batch_size, args.epochs, 1e-4, args.device, spec.data.seed, 0.05, 0.05
        )
        bare_peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        result = train(spec)
        studio_peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
        # the bare loop again after the studio, so a machine whose load drifts does not favour either
        bare_after = bare_loop(
            folder, csv, full, args.batch_size, args.epochs, 1e-4, args.device, spec.data.seed, 0.05, 0.05
        )
        client = mlflow.MlflowClient()
        studio = [
            m.value
            for m in sorted(
                client.get_metric_history(result.run_id, "train/tokens_per_second"), key=lambda m: m.step
            )
        ]
        estimate = client.get_run(result.run_id).data.tags.get("studio.llm_memory_estimate")
    later = slice(1, None) if args.epochs > 1 else slice(None)
    s = statistics.median(studio[later])
    b = statistics.median(bare[later] + bare_after[later])
    print(
        f"model: {'tiny test Llama' if args.tiny else args.model or 'Llama 512x8 (random weights)'}; "
        f"{args.examples} examples of ~{args.length} tokens, batch {args.batch_size}, {args.epochs} epochs, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"studio tokens/s per epoch: {', '.join(f'{v:,.0f}' for v in studio)}")
    print(
        f"bare   tokens/s per epoch: {', '.join(f'{v:,.0f}' for v in bare)} (before the studio), "
        f"{', '.join(f'{v:,.0f}' for v in bare_after)} (after)"
    )
    if studio_peak is not None:
        print(
            f"memory: studio estimate {estimate}; measured peak studio {studio_peak / 2**30:.2f} GB, "
            f"bare {bare_peak / 2**30:.2f} GB"
        )
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"memory: studio estimate {estimate}; this process's peak resident memory {peak:.2f} GB "
            "(both runs, Python and the libraries included)"
        )
    print(f"ratio studio / bare: {s / b:.3f} (medians after the first epoch: {s:,.0f} vs {b:,.0f} tokens/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
