"""Search quality: the default single run against a search with a time budget, on the bundled samples.

For each sample (wine, breast cancer, diabetes) and each seed, the seed sets the data split (and the
search's sampler): the default run is the CLI's defaults (``python -m studio train --data sample:…``,
trained in this process), the search is ``python -m studio search … --budget`` (its trials run as jobs,
on this machine's CPU slots). Both are judged on the same held-out test rows, which the search never
looked at while choosing. Prints one row per run and the means; the goals are the issue's (wine ≥ 0.98
accuracy, breast cancer ≥ 0.975, diabetes R² ≥ 0.47, never worse than the default beyond noise).

Also prints the search's own bookkeeping (sampling, storage, MLflow parent/child runs, polling: the
driver's time, plus the trials' per-epoch reports) as a share of its budget (goal < 5%): ``over %``
counts the driver's wall time and the time training waited for its reports (they are sent from a thread
of their own), ``cpu %`` the driver's and the reports' processor time (on a busy machine wall time also
counts waiting for a core). ``stop s`` is when the last trial stopped,
counted from the search's creation (its driver starts a few seconds after).

    python bench/search_quality.py [--budget 3m] [--seeds 0 1 2] [--samples wine breast_cancer diabetes]
        [--metric val/loss]

Runs in a temporary STUDIO_HOME and MLflow store unless ``--home`` is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOALS = {"wine": 0.98, "breast_cancer": 0.975, "diabetes": 0.47}


def default_spec(sample: str, seed: int, epochs: int | None = None):
    """The spec ``python -m studio train --data sample:NAME`` makes, with the split seed changed (and
    the epochs, for a tiny run)."""
    from studio.cli.main import build_parser
    from studio.cli.spec import spec_from_args

    args = build_parser().parse_args(["train", "--data", f"sample:{sample}"])
    spec = spec_from_args(args)
    return spec.with_changes(**{"data.seed": seed, **({"training.epochs": epochs} if epochs else {})})


def score_name(spec) -> str:
    from studio.core.spec import main_metric

    return "test/" + main_metric(spec.task).split("/", 1)[1]


def default_run(spec) -> float:
    from studio.engine.training import train

    result = train(spec)
    return result.test_metrics[score_name(spec)]


def search_run(spec, budget: float, seed: int, metric: str | None = None, trials: int | None = None) -> dict:
    from studio.jobs.store import get_job, search_jobs
    from studio.search.control import start_search, wait_for_search

    started = time.monotonic()
    search = start_search(spec, budget_seconds=budget, max_trials=trials, seed=seed, metric=metric)
    search = wait_for_search(search.id, timeout=budget + 600)
    wall = time.monotonic() - started
    trials = search_jobs(search.id)
    best = get_job(search.best_job_id) if search.best_job_id else None
    report_seconds, report_cpu = _report_seconds(search.id)
    last_stop = max((j.ended_at or 0) for j in trials) - search.created_at
    return {
        "test": best.test_metrics[score_name(spec)] if best else float("nan"),
        "val": search.best_value,
        "default_val": search.default_value,
        "trials": len(trials),
        "pruned": sum(j.trial_state == "pruned" for j in trials),
        "used": search.used_seconds,
        "overhead": search.overhead_seconds + report_seconds,
        "overhead_cpu": search.overhead_cpu_seconds + report_cpu,
        "wall": wall,
        "last_stop": last_stop,
        "best_trial": best.trial_number if best else None,
    }


def _report_seconds(search_id: str) -> tuple[float, float]:
    """Wall and processor seconds the trials spent reporting to the study (per-epoch scores, pruning)."""
    from studio.search.study import load_study

    study = load_study(search_id)
    wall = sum(float(t.user_attrs.get("report_seconds", 0.0)) for t in study.trials)
    cpu = sum(float(t.user_attrs.get("report_cpu_seconds", 0.0)) for t in study.trials)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", default="3m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", nargs="+", default=list(GOALS))
    parser.add_argument("--home", help="STUDIO_HOME to use (default: a temporary folder)")
    parser.add_argument("--metric", help="the score the searches optimise (default: the search's default)")
    parser.add_argument("--trials", type=int, help="at most this many trials per search")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny size that runs in seconds (what the tests run, so the benchmark never rots)",
    )
    args = parser.parse_args()
    if args.tiny:  # wine, one seed, two short trials of 3 epochs
        args.samples, args.seeds, args.budget, args.trials = ["wine"], [0], "25s", 2

    home = Path(args.home or tempfile.mkdtemp(prefix="search-bench-"))
    os.environ["STUDIO_HOME"] = str(home)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlruns/mlflow.db")
    from studio.core.settings import keep_mlflow_offline
    from studio.search.control import parse_budget

    keep_mlflow_offline()
    budget = parse_budget(args.budget)
    print(
        f"STUDIO_HOME={home}; budget {budget:.0f} s per search; CPU slots {os.environ.get('STUDIO_CPU_SLOTS', '1')}"
    )
    header = (
        f"{'sample':<14} {'seed':>4} {'score':<14} {'default':>8} {'search':>8} {'trials':>6} {'pruned':>6} "
        f"{'best#':>5} {'val def':>8} {'val best':>8} {'over %':>6} {'cpu %':>6} {'stop s':>7}"
    )
    print(header, flush=True)
    try:
        results = run_all(args, budget)
    finally:
        from studio.jobs import stop_scheduler

        stop_scheduler()  # the searches' trials started this home's scheduler: it ends with the benchmark
    print()
    print(f"{'sample':<14} {'default mean':>12} {'search mean':>12} {'goal':>6}  reached")
    for sample, pairs in results.items():
        base = statistics.mean(p[0] for p in pairs)
        found = statistics.mean(p[1] for p in pairs)
        goal = GOALS.get(sample, float("nan"))
        print(f"{sample:<14} {base:>12.4f} {found:>12.4f} {goal:>6.3f}  {'yes' if found >= goal else 'no'}")
    return 0


def run_all(args: argparse.Namespace, budget: float) -> dict[str, list[tuple[float, float]]]:
    """One default run and one search per sample and seed, a line each; ``sample -> [(default, search)]``."""
    results: dict[str, list[tuple[float, float]]] = {}
    for sample in args.samples:
        for seed in args.seeds:
            spec = default_spec(sample, seed, epochs=3 if args.tiny else None)
            base = default_run(spec)
            found = search_run(spec, budget, seed, args.metric, args.trials)
            results.setdefault(sample, []).append((base, found["test"]))
            print(
                f"{sample:<14} {seed:>4} {score_name(spec):<14} {base:>8.4f} {found['test']:>8.4f} "
                f"{found['trials']:>6} {found['pruned']:>6} {found['best_trial']!s:>5} "
                f"{found['default_val'] or float('nan'):>8.4f} {found['val'] or float('nan'):>8.4f} "
                f"{100 * found['overhead'] / budget:>6.1f} {100 * found['overhead_cpu'] / budget:>6.1f} "
                f"{found['last_stop']:>7.1f}",
                flush=True,
            )
    return results


if __name__ == "__main__":
    raise SystemExit(main())
