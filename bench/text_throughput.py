"""Text training throughput: the studio's text networks against bare PyTorch doing the same work, in one run.

One function per comparison (in ``COMPARISONS``), each building its two contestants and handing them to
``race``; ``main`` runs the comparisons asked for and prints their rows. Every comparison trains on the
same synthetic sentences (a planted keyword decides the class), already turned into token ids, so only
the fitting is timed; tokenising is reported apart.

- ``minilm``: fine-tuning ``TransformerTextNet`` (MiniLM-L6 from its PyPI package, mean pooling, linear
  head; embeddings plus ``--frozen-layers`` blocks frozen) in a plain loop, against a bare
  ``transformers.AutoModel`` with the same pooling, head, frozen parameters, batch, length, optimiser
  (AdamW) and seed.

``race`` alternates single optimiser steps (studio, bare, studio, …) so both meet the same load on a
shared machine, and compares the medians of the step times: wall clock (tokens/s counts every position
of the padded batch, the work done) and the process's CPU time per step. Prints each path's rate, the
ratios (goal about 1: the studio's network adds nothing to the encoder's cost), and peak memory.

    python bench/text_throughput.py [--only minilm] [--batch-size 16] [--length 128] [--steps 20]
                                    [--frozen-layers 0] [--device cpu|cuda] [--tiny]

``--device cuda`` trains under bfloat16 autocast. ``--tiny`` is a few steps on short batches, for CI.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = [
    *("the", "a", "river", "stone", "green", "quiet", "table", "window", "morning", "paper", "music"),
    *("light", "old", "small", "city", "rain", "road", "garden", "letter", "summer", "winter", "house"),
    *("bright", "dark", "slow", "fast", "story", "market"),
]


def sentences(rows: int, words: int, seed: int = 0):
    """Random sentences of ``words`` words; the class is whether 'excellent' was planted in them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=words)) for _ in range(rows)]
    labels = rng.integers(0, 2, size=rows)
    texts = [f"excellent {t}" if y else t for t, y in zip(texts, labels, strict=True)]
    return pd.DataFrame({"text": texts}), labels


@dataclass
class Contestant:
    """A network and how it turns a batch of token ids into logits (``forward(ids)``)."""

    name: str
    module: Any  # torch.nn.Module holding every parameter
    forward: Callable[[Any], Any]


def race(contestants: list[Contestant], ids, labels, args) -> list[dict[str, Any]]:
    """Alternate one optimiser step of each contestant, ``args.steps`` times after ``args.warmup``;
    rows with each one's median rates, and a last row with the ratios of the first to the second."""
    import torch
    from torch.nn import functional as F

    device = torch.device(args.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device == "cuda")
    batches = [
        (ids[s : s + args.batch_size].to(device), labels[s : s + args.batch_size].to(device))
        for s in range(0, len(ids) - args.batch_size + 1, args.batch_size)
    ]
    optimizers = []
    for contestant in contestants:
        contestant.module.to(device).train()
        params = [p for p in contestant.module.parameters() if p.requires_grad]
        optimizers.append(torch.optim.AdamW(params, lr=5e-5))
    wall: list[list[float]] = [[] for _ in contestants]
    cpu: list[list[float]] = [[] for _ in contestants]
    for i in range(args.warmup + args.steps):
        x, y = batches[i % len(batches)]
        for k, (contestant, optimizer) in enumerate(zip(contestants, optimizers, strict=True)):
            if args.device == "cuda":
                torch.cuda.synchronize()
            started, started_cpu = time.perf_counter(), time.process_time()
            with autocast:
                loss = F.cross_entropy(contestant.forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                wall[k].append(time.perf_counter() - started)
                cpu[k].append(time.process_time() - started_cpu)
    positions = args.batch_size * ids.shape[1]
    rows = [
        {
            "path": c.name,
            "tokens/s": positions / statistics.median(w),
            "rows/s": args.batch_size / statistics.median(w),
            "s/step": statistics.median(w),
            "cpu s/step": statistics.median(p),
        }
        for c, w, p in zip(contestants, wall, cpu, strict=True)
    ]
    per_step = [b / a for a, b in zip(wall[0], wall[1], strict=True)]
    rows.append(
        {
            "path": f"ratio {contestants[0].name} / {contestants[1].name}",
            "tokens/s": rows[0]["tokens/s"] / rows[1]["tokens/s"],
            "median of step pairs": statistics.median(per_step),
            "cpu time": rows[1]["cpu s/step"] / rows[0]["cpu s/step"],
        }
    )
    return rows


# --------------------------------------------------------------------------- MiniLM
def bare_mean_pool(model_dir: Path, n_out: int, frozen_layers: int, pad_id: int) -> Contestant:
    """The baseline as a user would write it: AutoModel, masked mean of the last hidden state, a head,
    with the same parameters frozen as the studio's network."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    encoder = AutoModel.from_pretrained(str(model_dir))
    module = torch.nn.ModuleDict(
        {"encoder": encoder, "head": torch.nn.Linear(encoder.config.hidden_size, n_out)}
    )
    layers = encoder.encoder.layer
    frozen = [encoder] if frozen_layers < 0 else [encoder.embeddings, *layers[:frozen_layers]]
    for part in frozen:
        part.requires_grad_(False)
    if encoder.pooler is not None:  # unused by mean pooling
        encoder.pooler.requires_grad_(False)

    def forward(x):
        mask = x != pad_id
        hidden = encoder(input_ids=x, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return module["head"](torch.nn.functional.dropout(pooled, 0.1, module.training))

    return Contestant("bare AutoModel", module, forward)


def compare_minilm(args) -> list[dict[str, Any]]:
    import torch

    from studio.core.pretrained import locate_pretrained
    from studio.core.transformer_runtime import TransformerTextEncoder, TransformerTextNet

    model_dir = locate_pretrained("minilm_l6")
    rows = args.batch_size * max(4, min(args.steps, 16))
    frame, labels = sentences(rows, words=max(4, args.length))  # long enough to fill every position
    encoder = TransformerTextEncoder.from_pretrained(model_dir, ["text"], args.length)
    started = time.perf_counter()
    ids, cut = encoder.encode(frame)
    tokenise_s = time.perf_counter() - started
    ids, labels = torch.from_numpy(ids), torch.from_numpy(labels)

    torch.manual_seed(0)
    net = TransformerTextNet(model_dir, 0, [], 2, frozen_layers=args.frozen_layers, pad_id=encoder.pad_id)
    no_numbers = torch.zeros(args.batch_size, 0, device=args.device)
    no_categories = torch.zeros(args.batch_size, 0, dtype=torch.int64, device=args.device)
    studio = Contestant("studio TransformerTextNet", net, lambda x: net(no_numbers, no_categories, x))
    torch.manual_seed(0)
    bare = bare_mean_pool(model_dir, 2, args.frozen_layers, encoder.pad_id)
    measured = race([studio, bare], ids, labels, args)
    measured.append(
        {"path": "tokenising (TransformerTextEncoder.encode)", "rows/s": rows / tokenise_s, "cut": cut}
    )
    return measured


COMPARISONS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {"minilm": compare_minilm}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(COMPARISONS), action="append", help="default: all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128, help="tokens per row (padded / cut to it)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimiser steps of each path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each path first")
    parser.add_argument("--frozen-layers", type=int, default=0, help="-1: the whole encoder")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="a few short steps (CI)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.length, args.steps, args.warmup = 4, 16, 3, 1
    import torch

    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"device {device}; batch {args.batch_size} x {args.length} tokens; {args.steps} steps of each after "
        f"{args.warmup} warm-up; frozen layers {args.frozen_layers}"
    )
    for name in args.only or sorted(COMPARISONS):
        print(name)
        for row in COMPARISONS[name](args):
            print("  " + "; ".join(f"{k} {_shown(v)}" for k, v in row.items()))
    print(f"peak memory of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
    return str(value)


if __name__ == "__main__":
    main()
