"""Bag-of-words training throughput: the studio's path against a bare PyTorch loop, in one process.

Both train the studio's bag-of-words network (``studio.core.text_runtime.BagOfWordsNet``, built by the
studio's registry with the same seed) on the same word ids (the studio's hashing encoder, read once by
the studio's DataModule) with the same batch size, AdamW settings and number of epochs, and run a
validation pass after every epoch. The studio's path is the full ``studio.engine.training.train``:
DataModule, LightningModule, Trainer, callbacks, checkpoints, MLflow logging to a temporary store or
``MLFLOW_TRACKING_URI`` (it encodes the texts itself; only its fitting time is compared). The text is
generated: reviews of 10 to 60 words drawn from a Zipf-shaped vocabulary, whose label depends on a few
marker words. Prints samples/s of each and the ratio (goal >= 0.95), the best of ``--repeats`` interleaved pairs.

    python bench/text_bow_throughput.py [--rows 20000] [--epochs 3] [--batch-size 0] [--repeats 3]
                                        [--device cpu|cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_texts(rows: int, seed: int = 0, vocabulary: int = 20000):
    """A table of generated texts: ``review`` and a ``label`` (good / bad / mixed) that depends on a
    few marker words, so the network has something to learn."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocabulary)])
    ranks = np.arange(1, vocabulary + 1)
    p = 1.0 / ranks
    p /= p.sum()
    good, bad = ["great", "lovely", "superb"], ["awful", "broken", "bland"]
    texts, labels = [], []
    for _ in range(rows):
        n = int(rng.integers(10, 61))
        body = list(words[rng.choice(vocabulary, size=n, p=p)])
        g, b = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        for marker in rng.choice(good, size=g).tolist() + rng.choice(bad, size=b).tolist():
            body.insert(int(rng.integers(0, len(body) + 1)), marker)
        texts.append(" ".join(body))
        labels.append("good" if g > b else "bad" if b > g else "mixed")
    return pd.DataFrame({"review": texts, "label": labels})


class CpuClock:
    """Train hooks that read the process's CPU time from the run's start (before the Trainer is built)
    to the end of its last epoch: on a machine shared with other work, CPU seconds vary less than wall
    seconds (both are printed)."""

    def __init__(self):
        from studio.engine.training import TrainHooks

        clock = self

        class Hooks(TrainHooks):
            def on_run_started(self, run_id: str, experiment_id: str) -> None:
                clock.started = time.process_time()

            def on_progress(self, progress) -> None:  # the last call: the last epoch's end
                clock.seconds = time.process_time() - clock.started

        self.hooks = Hooks()
        self.started = 0.0
        self.seconds: float | None = None


def bare_loop(data, spec, epochs: int, device) -> tuple[float, float]:
    """The baseline: a hand-written loop over the same tensors, same network and optimiser."""
    import torch
    from torch.nn import functional as F

    from lightning_modules.registry import TextShape, build_network

    torch.manual_seed(spec.data.seed)
    shape = TextShape(
        data.preprocessor.n_numeric, data.preprocessor.cardinalities, data.n_out, data.text_state
    )
    net = build_network(spec.architecture.name, spec.architecture.params, shape).to(device)
    # the optimiser the studio builds (AdamW; its fused kernel on CPU and CUDA)
    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=spec.optimizer.learning_rate,
        weight_decay=spec.optimizer.weight_decay,
        fused=True,
    )
    x_num, x_cat, x_text, y = (t.to(device) for t in data.tensors["train"])
    vx_num, vx_cat, vx_text, vy = (t.to(device) for t in data.tensors["val"])
    batch = data.batch_size
    n = len(y)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n, device=device)
        xs, cs, ts, ys = x_num[order], x_cat[order], x_text[order], y[order]
        for start in range(0, n, batch):
            stop = start + batch
            out = net(xs[start:stop], cs[start:stop], ts[start:stop])
            loss = F.cross_entropy(out, ys[start:stop])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            for start in range(0, len(vy), 1024):
                stop = start + 1024
                F.cross_entropy(
                    net(vx_num[start:stop], vx_cat[start:stop], vx_text[start:stop]), vy[start:stop]
                )
        sync()
    return time.perf_counter() - started, time.process_time() - cpu_started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the studio's automatic size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tiny", action="store_true", help="2,000 rows, 1 epoch, 1 pair (CI)")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.epochs, args.repeats = 2000, 1, 1

    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        os.environ["STUDIO_HOME"] = f"{tmp}/home"
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns/mlflow.db")
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            print("skipped: --device cuda asked but no CUDA device is visible")
            return 0
        from studio.core.spec import RunSpec
        from studio.data import add_csv, load_profile, load_table
        from studio.engine.training import train
        from studio.modalities.text.modality import TextModality

        csv = Path(tmp) / "texts.csv"
        make_texts(args.rows).to_csv(csv, index=False)
        dataset = add_csv(csv, name="texts")
        spec = RunSpec.from_dict(
            {
                "task": "text_classification",
                "data": {"dataset_id": dataset.id, "target": "label"},
                "training": {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device},
                "scheduler": {"name": "none"},
                "early_stopping": {"enabled": False},
            }
        )
        prepared = TextModality().prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id))
        data = prepared.data
        data.text_state = prepared.encoder.state
        params = spec.architecture.params
        train_rows = data.sizes["train"]
        words = float((data.tensors["train"][2] != 0).sum(dim=1).float().mean())
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}; {train_rows} "
            f"training rows, {words:.0f} word ids per row, batch {data.batch_size}, {args.epochs} epochs; "
            f"bag of words: {params['buckets']} x {params['embedding_dim']} table, word groups "
            f"{params['word_ngrams']}, lr {spec.optimizer.learning_rate}"
        )

        device = torch.device(args.device)
        bare_loop(data, spec, 1, device)  # warm-up: allocator, kernels
        studio_times, bare_times, totals, saves, studio_cpu, bare_cpu = [], [], [], [], [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            clock = CpuClock()
            result = train(spec, hooks=clock.hooks)
            studio_times.append(result.fit_seconds)
            studio_cpu.append(clock.seconds if clock.seconds is not None else float("nan"))
            totals.append(result.seconds)
            saves.append((result.checkpoint_seconds, result.checkpoint_bytes))
            wall, cpu = bare_loop(data, spec, args.epochs, device)
            bare_times.append(wall)
            bare_cpu.append(cpu)

        samples = train_rows * args.epochs
        studio_rate = samples / min(studio_times)
        bare_rate = samples / min(bare_times)
        print(f"bare PyTorch loop : {bare_rate:12,.0f} samples/s (best of {args.repeats})")
        print(f"studio (Lightning): {studio_rate:12,.0f} samples/s (best of {args.repeats})")
        paired = sorted(bare / studio for studio, bare in zip(studio_times, bare_times, strict=True))
        print(
            f"ratio studio/bare : {studio_rate / bare_rate:.3f} best against best, "
            f"{paired[len(paired) // 2]:.3f} median of {args.repeats} back-to-back pairs   (goal >= 0.95)"
        )
        print(
            f"CPU seconds       : studio {min(studio_cpu):.2f} (from the run's start to its last epoch's end), "
            f"bare {min(bare_cpu):.2f}: ratio {min(bare_cpu) / min(studio_cpu):.3f} (best of each)"
        )
        fastest = studio_times.index(min(studio_times))
        print(
            f"checkpoints       : {saves[fastest][0]:.2f} s of the studio's fastest fit of "
            f"{studio_times[fastest]:.2f} s (one a {saves[fastest][1] / 1e6:.0f} MB file: weights and AdamW's "
            f"two moments, saved at the end of an epoch when 2 s have passed since the last)"
        )
        print(
            f"whole train() call: {min(totals):.2f} s (reading and encoding the texts, fit, test, MLflow, "
            f"bundle with its ONNX file)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
