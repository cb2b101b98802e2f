"""``python -m studio search …``: find the best settings within a time budget (or a number of trials).

``search`` takes the same options as ``train`` (the spec searched around) plus the budget, the score to
optimise and a narrowing of the search space; it starts the search in the background and follows it
(one line per finished trial) until it ends, or returns at once with ``--detach``. ``jobs list`` shows
searches, ``jobs show/cancel/resume/wait SEARCH_ID`` work on a whole search (see :mod:`studio.cli.jobs`).
Only argparse at import time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from studio.core.quality import verdict
from studio.core.text import counted


def add_search_parser(
    subparsers: argparse._SubParsersAction, add_train_options: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    search = subparsers.add_parser(
        "search",
        help="find the best settings automatically within a time budget (trials run as background jobs)",
    )
    add_train_options(search)
    search.add_argument("--budget", help="time to spend, e.g. 90s, 10m, 1h (a bare number is minutes)")
    search.add_argument("--trials", type=int, help="at most this many trials")
    search.add_argument(
        "--metric",
        help="the validation score to optimise (default: val/accuracy for classes, val/r2 for numbers)",
    )
    search.add_argument("--space", help="a YAML file narrowing the search space (see the README)")
    search.add_argument("--seed", type=int, help="the search's random seed (default: the spec's data seed)")
    search.add_argument(
        "--lr-find",
        action="store_true",
        help="first run the learning-rate finder and centre the learning rate's range on its suggestion",
    )
    search.add_argument(
        "--detach", action="store_true", help="start it and return (follow with `jobs show SEARCH_ID`)"
    )
    search.set_defaults(handler=cmd_search)
    return search


def cmd_search(args: argparse.Namespace) -> int:
    from studio.cli.spec import spec_from_args
    from studio.core.errors import SpecError
    from studio.search.control import parse_budget, start_search
    from studio.search.space import parse_narrowing

    budget = parse_budget(args.budget) if args.budget else None
    if budget is None and not args.trials:
        raise SpecError("Give the search a time budget (--budget 10m) or a number of trials (--trials 20).")
    narrowing = None
    if args.space:
        with open(args.space, encoding="utf-8") as handle:
            narrowing = parse_narrowing(handle.read())
    spec = spec_from_args(args)
    centre = None
    if args.lr_find:
        from studio.search.lr_find import suggest_learning_rate

        finding = suggest_learning_rate(spec)
        centre = finding.suggestion
        if centre:
            print(
                f"The learning-rate finder suggests {centre:.3g}: the search tries {centre / 10:.3g} to {centre * 10:.3g}."
            )
        else:
            print(
                f"The learning-rate finder has no clear suggestion ({finding.note or 'no lowest point'}); "
                "the search keeps its usual range."
            )
    search = start_search(
        spec,
        budget_seconds=budget,
        max_trials=args.trials,
        metric=args.metric,
        narrowing=narrowing,
        seed=args.seed,
        learning_rate_centre=centre,
    )
    print(f"{search.id}: {search.name} ({search.budget_text}), optimising {search.metric}")
    if args.detach:
        print(f"It runs in the background: `python -m studio jobs show {search.id}` follows it.")
        return 0
    return follow(search.id)


def follow(search_id: str, poll: float = 1.0) -> int:
    """Print each trial as it ends, then the result; 0 when the search found a model."""
    from studio.search import control, records

    told: set[str] = set()
    try:
        while True:
            search = records.get_search(search_id)
            for job in control.trials(search_id):
                settled = job.trial_state or (not job.is_active and not search.is_active)
                if settled and not job.is_active and job.id not in told:
                    told.add(job.id)
                    print(trial_line(job, search.metric), flush=True)
            if not search.is_active:
                break
            control.ensure_driver(search_id)  # a driver that died is started again
            time.sleep(poll)
    except KeyboardInterrupt:
        print(
            f"\nThe search goes on in the background; `python -m studio jobs cancel {search_id}` stops it.",
            file=sys.stderr,
        )
        return 130
    print(result_text(records.get_search(search_id)))
    return 0 if search.best_job_id else 1


def trial_line(job: Any, metric: str) -> str:
    state = job.trial_state or job.state
    score = job.metrics.get(metric)
    shown = f" · last {metric} {score:.4g}" if score is not None else ""
    return f"trial {job.trial_number:>3} {state:<9} {job.id}{shown}"


def result_text(search: Any) -> str:
    from studio.jobs.store import format_duration, get_job

    lines = [f"{search.id}: {search.state} — {search.reason or ''}".rstrip(" —")]
    lines.append(
        f"used {format_duration(search.used_seconds)}"
        + (f" of {format_duration(search.budget_seconds)}" if search.budget_seconds else "")
        + (
            f"; the search's own bookkeeping took {search.overhead_seconds:.1f} s"
            if search.overhead_seconds
            else ""
        )
    )
    if search.default_value is not None:
        lines.append(f"the spec's own settings (trial 0): {search.metric} {search.default_value:.4f}")
    if search.best_job_id:
        best = get_job(search.best_job_id)
        lines.append(
            f"chosen: trial {best.trial_number} ({best.id}), {search.metric} {search.best_value:.4f}"
        )
        if best.test_metrics:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(best.test_metrics.items()))
            lines.append(f"its test scores (the test rows were not used to choose it): {shown}")
            found = verdict(best.outcome)
            if found is not None:
                lines.append(f"against a guess: {found.sentence}")
        if best.bundle_path:
            lines.append(f"model bundle: {best.bundle_path}")
    else:
        lines.append("no trial finished, so there is no model")
    return "\n".join(lines)


# --------------------------------------------------------------------------- `jobs` on searches
def is_search_id(text: str) -> bool:
    return str(text).startswith("search-")


def search_rows(limit: int) -> list[tuple[str, str, str, str, str]]:
    """``jobs list`` rows for the newest searches: id, state, name, progress, created."""
    from datetime import datetime

    from studio.search import control, records

    rows = []
    for search in records.list_searches(limit=limit):
        trials = control.trials(search.id)
        best = f" · best {search.metric} {search.best_value:.4g}" if search.best_value is not None else ""
        progress = f"{counted(len(trials), 'trial')}{best}" + (
            f" · {search.budget_text}" if search.budget_text else ""
        )
        created = datetime.fromtimestamp(search.created_at).strftime("%Y-%m-%d %H:%M:%S")
        name = search.name if len(search.name) <= 32 else search.name[:31] + "…"
        rows.append((search.id, search.state, name, progress, created))
    return rows


def show_search(search_id: str, as_json: bool = False) -> int:
    """``jobs show SEARCH_ID``: the search, its result and one line per trial."""
    import json
    from dataclasses import asdict

    from studio.search import control, records

    search = records.get_search(search_id)
    trials = control.trials(search_id)
    if as_json:
        data = asdict(search)
        data["trials"] = [
            {
                "job_id": j.id,
                "number": j.trial_number,
                "state": j.state,
                "trial_state": j.trial_state,
                "mlflow_run_id": j.mlflow_run_id,
            }
            for j in trials
        ]
        print(json.dumps(data, indent=2))
        return 0
    print(result_text(search))
    if search.is_active:
        print(f"running: {search.budget_text}; `python -m studio jobs cancel {search.id}` stops it")
    print(f"{counted(len(trials), 'trial')}:")
    for job in trials:
        print("  " + trial_line(job, search.metric) + (f" ({job.progress_text})" if job.is_active else ""))
    return 0


def cancel_search_cmd(search_id: str, wait: float) -> int:
    from studio.search import control

    search = control.cancel_search(search_id)
    if wait > 0:
        print(f"Stopping {search.id} and its trials …", flush=True)
        search = control.wait_for_search(search_id, timeout=wait)
    print(f"{search.id}: {search.state}")
    return 0 if not search.is_active else 1


def resume_search_cmd(search_id: str, more: str | None, more_trials: int | None) -> int:
    from studio.search import control

    seconds = control.parse_budget(more) if more else None
    search = control.resume_search(search_id, more_seconds=seconds, more_trials=more_trials)
    print(
        f"{search.id}: {search.state} ({search.budget_text}); `python -m studio jobs wait {search.id}` follows it."
    )
    return 0


def wait_search_cmd(search_id: str, timeout: float | None) -> int:
    from studio.search import control, records

    if records.get_search(search_id).is_active:
        control.ensure_driver(search_id)
    search = control.wait_for_search(search_id, timeout=timeout)
    print(result_text(search))
    return 0 if search.state == records.FINISHED and search.best_job_id else 1
