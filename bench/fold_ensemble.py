"""Fold ensembles: one model against 'use all my data' (k fold models averaged), on the bundled samples.

For each sample and split seed, the single run is the CLI's defaults (``python -m studio train --data
sample:NAME``) and the ensemble the same spec with ``--folds K``; both are scored on the same held-out
test rows (the split's test rows do not depend on the fold). Prints one row per run (test score, the
fold models' own mean test score, training seconds, milliseconds to predict one row) and the means.

    python bench/fold_ensemble.py [--samples wine diabetes] [--seeds 0 1 2] [--folds 5]

Runs in a temporary STUDIO_HOME and MLflow store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def default_spec(sample: str, seed: int, epochs: int | None = None):
    """The spec ``python -m studio train --data sample:NAME`` makes, with the split seed changed (and the
    epochs, for a tiny run)."""
    from studio.cli.main import build_parser
    from studio.cli.spec import spec_from_args

    spec = spec_from_args(build_parser().parse_args(["train", "--data", f"sample:{sample}"]))
    return spec.with_changes(**{"data.seed": seed, **({"training.epochs": epochs} if epochs else {})})


def score_name(spec) -> str:
    from studio.core.spec import main_metric

    return "test/" + main_metric(spec.task).split("/", 1)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", nargs="+", default=["wine", "diabetes"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="wine, one seed, 2 folds of 3 epochs (seconds)")
    args = parser.parse_args()
    epochs = None
    if args.tiny:
        args.samples, args.seeds, args.folds, epochs = ["wine"], [0], 2, 3
    home = Path(tempfile.mkdtemp(prefix="ensemble-bench-"))
    os.environ["STUDIO_HOME"] = str(home)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlruns/mlflow.db")
    from studio.core import ensembles
    from studio.core.settings import keep_mlflow_offline
    from studio.engine.training import train

    keep_mlflow_offline()
    print(
        f"{'sample':<10} {'seed':>4} {'score':<14} {'single':>8} {'ensemble':>8} {'members':>8} "
        f"{'single s':>8} {'ens s':>8} {'ms/row 1':>8} {'ms/row k':>8}",
        flush=True,
    )
    found: dict[str, list[tuple[float, float]]] = {}
    for sample in args.samples:
        for seed in args.seeds:
            spec = default_spec(sample, seed, epochs)
            metric = score_name(spec)
            single = train(spec)
            both = spec.with_changes(**{"data.use_all_data": True, "data.folds": args.folds})
            ensemble = train(both)
            quality = ensemble.quality
            alone = ensembles.member_scores(quality, metric)
            one, whole = single.test_metrics[metric], ensemble.test_metrics[metric]
            found.setdefault(sample, []).append((one, whole))
            print(
                f"{sample:<10} {seed:>4} {metric:<14} {one:>8.4f} {whole:>8.4f} "
                f"{statistics.mean(alone):>8.4f} {single.seconds:>8.1f} {ensemble.seconds:>8.1f} "
                f"{quality[ensembles.MEMBER_MS_PER_ROW]:>8.3f} {quality[ensembles.MS_PER_ROW]:>8.3f}",
                flush=True,
            )
    print()
    for sample, pairs in found.items():
        one = statistics.mean(p[0] for p in pairs)
        whole = statistics.mean(p[1] for p in pairs)
        print(f"{sample}: mean single {one:.4f}, mean ensemble {whole:.4f} over {len(pairs)} seed(s)")
    print(
        "ensemble - single (mean): "
        + ", ".join(
            f"{sample} {statistics.mean(p[1] - p[0] for p in pairs):+.4f}" for sample, pairs in found.items()
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
