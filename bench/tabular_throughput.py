"""Tabular training throughput: the studio's path against a bare PyTorch loop, in one process.

Both train the same MLP (built by the studio's registry, same seed) on the same in-memory table with
the same batch size, optimiser and number of epochs, and run a validation pass after every epoch.
The studio's path is the full ``studio.engine.training.train``: DataModule, LightningModule, Trainer,
callbacks, MLflow logging to a temporary store (or ``MLFLOW_TRACKING_URI`` when set). Only the fitting
time is compared (loading, testing and writing the bundle are reported separately). Prints samples/s
of each and the ratio (goal ≥ 0.95).

    python bench/tabular_throughput.py [--rows 20000] [--epochs 5] [--batch-size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_table(rows: int, features: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    weights = rng.normal(size=features)
    label = np.where(x @ weights + 0.3 * rng.normal(size=rows) > 0, "pos", "neg")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["label"] = label
    return frame


def bare_loop(data, spec, epochs: int) -> float:
    """The baseline: a hand-written loop over the same tensors, same network and optimiser."""
    import torch
    from torch.nn import functional as F

    from lightning_modules.registry import TabularShape, build_network

    torch.manual_seed(spec.data.seed)
    shape = TabularShape(data.preprocessor.n_numeric, data.preprocessor.cardinalities, data.n_out)
    net = build_network(spec.architecture.name, spec.architecture.params, shape)
    optimizer = torch.optim.AdamW(  # as the studio builds it: the fused kernel on CPU and CUDA
        net.parameters(),
        lr=spec.optimizer.learning_rate,
        weight_decay=spec.optimizer.weight_decay,
        fused=True,
    )
    x_num, x_cat, y = data.tensors["train"]
    vx_num, vx_cat, vy = data.tensors["val"]
    batch = spec.training.batch_size
    n = len(y)
    started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n)
        xs, cs, ys = x_num[order], x_cat[order], y[order]
        for start in range(0, n, batch):
            out = net(xs[start : start + batch], cs[start : start + batch])
            loss = F.cross_entropy(out, ys[start : start + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            F.cross_entropy(net(vx_num, vx_cat), vy).item()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny size that runs in seconds (what the tests run, so the benchmark never rots)",
    )
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.features, args.epochs, args.batch_size, args.repeats = 600, 4, 1, 64, 1

    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        os.environ["STUDIO_HOME"] = f"{tmp}/home"
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns/mlflow.db")
        import torch

        from studio.core.spec import RunSpec
        from studio.data import add_csv, load_profile, load_table
        from studio.engine.training import train
        from studio.modalities.tabular.prepare import table_data_module

        csv = Path(tmp) / "bench.csv"
        make_table(args.rows, args.features).to_csv(csv, index=False)
        dataset = add_csv(csv, name="bench")
        spec = RunSpec.from_dict(
            {
                "task": "classification",
                "data": {"dataset_id": dataset.id, "target": "label"},
                "training": {"epochs": args.epochs, "batch_size": args.batch_size, "device": "cpu"},
                "scheduler": {"name": "none"},
                "early_stopping": {"enabled": False},
            }
        )
        data = table_data_module(load_table(dataset.id), load_profile(dataset.id), spec)
        train_rows = data.sizes["train"]
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; {train_rows} training rows, "
            f"{args.features} features, batch {args.batch_size}, {args.epochs} epochs, MLP "
            f"{spec.architecture.params['hidden_layers']}x{spec.architecture.params['width']}"
        )

        bare_loop(data, spec, 1)  # warm-up: allocator, kernels
        studio_times, bare_times, totals, first_points = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            result = train(spec)
            studio_times.append(result.fit_seconds)
            totals.append(result.seconds)
            first_points.append(result.first_point_seconds or float("nan"))
            bare_times.append(bare_loop(data, spec, args.epochs))

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
            f"whole train() call: {min(totals):.2f} s (loading, fit, test, MLflow, bundle); "
            f"first train/loss logged {min(first_points):.3f} s after train() started"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
