"""A quick screen of table settings for ``bench/quality.py``: the studio's own spec (as the CLI builds it,
``--set`` changes included), split, preparation and network, trained in a plain PyTorch loop that mirrors
``TabularLightningModule`` (AdamW, the learning rate halved on plateaus of the watched metric, early
stopping with its patience, the best epoch's weights; five fold models averaged when
``data.use_all_data``), with no Lightning, MLflow or bundle around it: a few CPU seconds per table and
seed instead of minutes, so many seeds fit. It is a screen, not the studio (its numbers come near the
studio's, not to the decimal): confirm a finding with ``bench/quality.py``.

``--x`` tries what the spec cannot say yet: ``loss=huber`` (with ``delta=``), ``ple=N`` (each number
input in N quantile bins, piecewise linear: Gorishniy et al. 2022), ``smear=1`` (a log-scale target's
predictions times the mean of exp(validation residual on the log scale): Duan's smearing).

    python bench/quality_screen.py --sets hitters --seeds 1 2 3 4 5 6 7 8 [--set PATH=VALUE] [--x KEY=VALUE] [--tiny]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


class PiecewiseLinear:
    """Each number input as N quantile bins of the training rows, piecewise linear (the first bin open
    below, the last open above), before the network."""

    def __init__(self, x: Any, bins: int):
        import numpy as np
        import torch

        self.edges = []
        for j in range(x.shape[1]):
            edges = np.unique(np.quantile(x[:, j], np.linspace(0, 1, bins + 1)))
            if len(edges) < 2:
                edges = np.array([edges[0] - 1, edges[0] + 1]) if len(edges) else np.array([0.0, 1.0])
            self.edges.append(
                (torch.tensor(edges[:-1], dtype=torch.float32), torch.tensor(edges[1:], dtype=torch.float32))
            )
        self.width = sum(len(low) for low, _ in self.edges)

    def wrap(self, net: Any) -> Any:
        import torch

        edges = self.edges

        class Encoded(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x_num: Any, x_cat: Any) -> Any:
                parts = []
                for j, (low, high) in enumerate(edges):
                    value = (x_num[:, j : j + 1] - low) / (high - low)
                    inner = value.clamp(0, 1)
                    if value.shape[1] > 1:
                        inner = torch.cat(
                            [value[:, :1].clamp(max=1), inner[:, 1:-1], value[:, -1:].clamp(min=0)], 1
                        )
                    parts.append(inner)
                return self.net(torch.cat(parts, 1), x_cat)

        return Encoded()


def train_one(spec: Any, data: Any, extra: dict[str, str]) -> tuple[Any, int, int]:
    """One model on one prepared split: the network at its best epoch, that epoch and the last one."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from lightning_modules.registry import TabularShape, build_network
    from studio.core.runtime import target_units
    from studio.core.spec import metric_mode

    x_num, x_cat, y = data.tensors["train"]
    n_numeric = data.preprocessor.n_numeric
    encoding = PiecewiseLinear(x_num.numpy(), int(extra["ple"])) if extra.get("ple") else None
    shape = TabularShape(
        encoding.width if encoding else n_numeric, data.preprocessor.cardinalities, data.n_out
    )
    net = build_network(spec.architecture.name, spec.architecture.params, shape)
    if encoding is not None:
        net = encoding.wrap(net)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=spec.optimizer.learning_rate, weight_decay=spec.optimizer.weight_decay
    )
    monitor = spec.early_stopping.metric
    mode = metric_mode(monitor)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=spec.scheduler.plateau_factor, patience=spec.scheduler.plateau_patience
    )
    v_num, v_cat, v_y = data.tensors["val"]
    classes = data.head == "classification"
    v_units = None if classes else target_units(v_y.numpy(), data.target_state)
    order = torch.Generator().manual_seed(spec.data.seed)
    best, best_state, best_epoch, stale, epoch = None, None, 0, 0, 0

    def loss_of(out: Any, target: Any) -> Any:
        if classes:
            return F.cross_entropy(out, target)
        out = out.squeeze(-1)
        if extra.get("loss") == "huber":
            return F.huber_loss(out, target, delta=float(extra.get("delta", 1.0)))
        return F.mse_loss(out, target)

    for epoch in range(spec.training.epochs):
        net.train()
        rows = torch.randperm(len(y), generator=order)
        for start in range(0, len(y), data.batch_size):
            batch = rows[start : start + data.batch_size]
            if len(batch) == 1 and len(y) > 1:  # batch norm cannot train on one row
                continue
            loss = loss_of(net(x_num[batch], x_cat[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            out = net(v_num, v_cat)
        if monitor == "val/loss":
            score = float(loss_of(out, v_y))
        elif classes:
            score = float((out.argmax(-1) == v_y).float().mean())
        else:
            error = v_units - target_units(out.squeeze(-1).numpy(), data.target_state)
            mse = float(np.mean(error**2))
            score = {
                "val/rmse": mse**0.5,
                "val/mae": float(np.mean(np.abs(error))),
                "val/r2": 1 - mse / float(np.var(v_units)),
            }[monitor]
        plateau.step(score)
        if best is None or (score < best if mode == "min" else score > best):
            best, best_epoch, stale, best_state = score, epoch, 0, copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if spec.early_stopping.enabled and stale >= spec.early_stopping.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return net, best_epoch, epoch


def screen(name: str, seed: int, folder: Path, changes: list[str], extra: dict[str, str]) -> float:
    """The test score (accuracy or R²) of the studio's defaults with ``changes`` on one split."""
    import numpy as np
    import quality
    import torch
    from sklearn.metrics import r2_score

    from studio.core.runtime import target_units
    from studio.data import get_dataset, load_profile, load_table
    from studio.modalities.tabular.modality import TabularModality

    ds = quality.DATASETS[name]
    ref = ds.data()
    if not isinstance(ref, str):
        path = folder / f"{name}.csv"
        if not path.exists():
            ref.to_csv(path, index=False)
        ref = str(path)
    spec = quality.studio_spec(ref, ds.target, seed, changes)
    torch.manual_seed(seed)
    dataset = get_dataset(spec.data.dataset_id)
    table, profile = load_table(dataset.id), load_profile(dataset.id)
    outputs, epochs, smear = [], [], []
    for fold in range(spec.data.folds if spec.data.use_all_data else 1):
        data = TabularModality().prepare(spec, dataset, table.copy(), profile, fold=fold).data
        net, best_epoch, last_epoch = train_one(spec, data, extra)
        epochs.append(f"{best_epoch + 1}/{last_epoch + 1}")
        t_num, t_cat, t_y = data.tensors["test"]
        with torch.no_grad():
            out = net(t_num, t_cat)
            if extra.get("smear") and data.target_state.get("log_scale"):
                v_num, v_cat, v_y = data.tensors["val"]
                residual = (v_y.numpy() - net(v_num, v_cat).squeeze(-1).numpy()) * data.target_state["std"]
                smear.append(float(np.mean(np.exp(residual))))
        outputs.append(out.softmax(-1).numpy() if data.head == "classification" else out.squeeze(-1).numpy())
    if data.head == "classification":
        score = float((np.mean(outputs, axis=0).argmax(-1) == t_y.numpy()).mean())
    else:
        predicted = target_units(np.mean(outputs, axis=0), data.target_state)
        if smear:
            predicted = (predicted + 1) * float(np.mean(smear)) - 1
        score = float(r2_score(target_units(t_y.numpy(), data.target_state), predicted))
    print(f"  {name} seed {seed}: {score:.4f} (best/last epochs {' '.join(epochs)})", flush=True)
    return score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["hitters"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--x", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tiny", action="store_true", help="the diabetes sample, one seed, 3 epochs (CI)")
    args = parser.parse_args()
    if args.tiny:
        args.sets, args.seeds, args.changes = (
            ["diabetes"],
            args.seeds[:1],
            [*args.changes, "training.epochs=3"],
        )
    extra = dict(item.split("=", 1) for item in args.extra)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="studio-screen-") as tmp:
        os.environ.setdefault("STUDIO_HOME", f"{tmp}/home")
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns/mlflow.db")
        import torch

        torch.set_num_threads(1)
        print(f"changes: {args.changes or 'none'}; extra: {extra or 'none'}")
        for name in args.sets:
            started = time.perf_counter()
            scores = [screen(name, seed, Path(tmp), args.changes, extra) for seed in args.seeds]
            shown = " / ".join(f"{s:.4f}" for s in scores)
            print(
                f"{name}: mean {sum(scores) / len(scores):.4f} ({shown}; {time.perf_counter() - started:.0f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
