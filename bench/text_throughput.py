"""Text training throughput: the studio's text networks against bare PyTorch doing the same work, in one run.

One function per comparison, each returning the rows it measured; ``main`` runs the ones asked for and
prints them. Every comparison trains on the same synthetic sentences (a planted keyword decides the
class), already turned into token ids, so only the fitting is timed; tokenising is reported apart.

- ``minilm``: fine-tuning ``TransformerTextNet`` (MiniLM-L6 from its PyPI package, mean pooling, linear
  head; embeddings plus ``--frozen-layers`` blocks frozen) in a plain loop, against a bare
  ``transformers.AutoModel`` with the same pooling, head, frozen parameters, batch, length, optimiser
  (AdamW) and seed. Tokens/s counts every position of the padded batch (the work done); rows/s too.

Prints each path's rate, the ratio (goal about 1: the studio's network adds nothing to the encoder's
cost), the time per step and the process's peak memory. Runs alternate (studio, bare, studio, …) so
both meet the same load on a shared machine; the best and the median of the pairs are given.

    python bench/text_throughput.py [--only minilm] [--batch-size 16] [--length 128] [--steps 20]
                                    [--repeats 3] [--frozen-layers 0] [--device cpu|cuda] [--tiny]

``--device cuda`` trains under bfloat16 autocast. ``--tiny`` is a few steps on short batches, for CI.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
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


def timed_steps(net, ids, labels, args, forward: Callable[[Any, Any], Any], warmup: int) -> tuple[float, int]:
    """Seconds for ``args.steps`` optimiser steps after ``warmup`` untimed ones, and the positions seen."""
    import torch
    from torch.nn import functional as F

    device = torch.device(args.device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=5e-5)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device == "cuda")
    batches = [
        (ids[s : s + args.batch_size].to(device), labels[s : s + args.batch_size].to(device))
        for s in range(0, len(ids) - args.batch_size + 1, args.batch_size)
    ]
    net.train()

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        with autocast:
            loss = F.cross_entropy(forward(net, x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(args.steps):
        step(warmup + i)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, args.steps * args.batch_size * ids.shape[1]


# --------------------------------------------------------------------------- MiniLM
class BareMeanPool:
    """The baseline as a user would write it: AutoModel, masked mean of the last hidden state, a head."""

    def __init__(self, model_dir: Path, n_out: int, frozen_layers: int, pad_id: int):
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.encoder = AutoModel.from_pretrained(str(model_dir))
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_out)
        self.module = torch.nn.ModuleDict({"encoder": self.encoder, "head": self.head})
        self.pad_id = pad_id
        layers = self.encoder.encoder.layer
        frozen = [self.encoder] if frozen_layers < 0 else [self.encoder.embeddings, *layers[:frozen_layers]]
        for part in frozen:
            part.requires_grad_(False)
        if self.encoder.pooler is not None:  # unused by mean pooling
            self.encoder.pooler.requires_grad_(False)

    def forward(self, _net, x):
        import torch

        mask = x != self.pad_id
        hidden = self.encoder(input_ids=x, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(torch.nn.functional.dropout(pooled, 0.1, self.module.training))


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
    device = torch.device(args.device)

    def studio_run() -> tuple[float, int]:
        torch.manual_seed(0)
        net = TransformerTextNet(model_dir, 0, [], 2, frozen_layers=args.frozen_layers, pad_id=encoder.pad_id)
        net.to(device)
        x_num = torch.zeros(args.batch_size, 0, device=device)
        x_cat = torch.zeros(args.batch_size, 0, dtype=torch.int64, device=device)
        return timed_steps(net, ids, labels, args, lambda n, x: n(x_num, x_cat, x), args.warmup)

    def bare_run() -> tuple[float, int]:
        torch.manual_seed(0)
        bare = BareMeanPool(model_dir, 2, args.frozen_layers, encoder.pad_id)
        bare.module.to(device)
        return timed_steps(bare.module, ids, labels, args, bare.forward, args.warmup)

    studio_rates, bare_rates = [], []
    for _ in range(args.repeats):
        seconds, positions = studio_run()
        studio_rates.append(positions / seconds)
        seconds, positions = bare_run()
        bare_rates.append(positions / seconds)
    pairs = [s / b for s, b in zip(studio_rates, bare_rates, strict=True)]
    step_s = args.batch_size * args.length / max(studio_rates)
    return [
        {"comparison": "minilm", "path": "studio TransformerTextNet", "tokens/s": max(studio_rates),
         "rows/s": max(studio_rates) / args.length, "s/step": step_s},
        {"comparison": "minilm", "path": "bare AutoModel loop", "tokens/s": max(bare_rates),
         "rows/s": max(bare_rates) / args.length, "s/step": args.batch_size * args.length / max(bare_rates)},
        {"comparison": "minilm", "path": "ratio studio/bare", "best": max(studio_rates) / max(bare_rates),
         "median of pairs": statistics.median(pairs), "pairs": [round(p, 3) for p in pairs]},
        {"comparison": "minilm", "path": "tokenising (TransformerTextEncoder.encode)",
         "rows/s": rows / tokenise_s, "rows cut": cut},
    ]  # fmt: skip


COMPARISONS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {"minilm": compare_minilm}


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(COMPARISONS), action="append", help="default: all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128, help="tokens per row (padded / cut to it)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimiser steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating (studio, bare) pairs")
    parser.add_argument("--frozen-layers", type=int, default=0, help="-1: the whole encoder")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="a few short steps (CI)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.length, args.steps, args.warmup, args.repeats = 4, 16, 3, 1, 1
    import torch

    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"device {device}; batch {args.batch_size} x {args.length} tokens; {args.steps} steps after "
        f"{args.warmup} warm-up; {args.repeats} pairs; frozen layers {args.frozen_layers}"
    )
    for name in args.only or sorted(COMPARISONS):
        for row in COMPARISONS[name](args):
            print("  " + "; ".join(f"{k} {_shown(v)}" for k, v in row.items()))
    print(f"peak memory of this process {peak_memory_mib():.0f} MiB")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
    return str(value)


if __name__ == "__main__":
    main()
