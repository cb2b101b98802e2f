"""``python -m studio jobs …``: submit, list, show, wait for, cancel, resume and delete background jobs.

The main CLI registers these with ``add_jobs_parser(subparsers, add_train_options)``. They work on the
same job store as the pages; only ``submit`` builds a spec (through ``studio.cli.spec.spec_from_args``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime

from studio.core import ensembles, quality
from studio.jobs.store import STATES


def add_jobs_parser(
    subparsers: argparse._SubParsersAction, add_train_options: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Add ``jobs`` and its subcommands; ``submit`` takes the same options as ``train``."""
    jobs = subparsers.add_parser(
        "jobs", help="background training jobs: submit, list, show, wait, cancel, resume"
    )
    sub = jobs.add_subparsers(dest="jobs_command", required=True)

    submit = sub.add_parser("submit", help="queue a training job (same options as train); prints its id")
    add_train_options(submit)
    submit.set_defaults(handler=cmd_submit)

    listing = sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--limit", type=int, default=30, help="show at most this many (default 30)")
    listing.add_argument(
        "--state", action="append", choices=STATES, help="only jobs in this state (repeatable)"
    )
    listing.set_defaults(handler=cmd_list)
    # (show, wait, cancel and resume also take a search's id: they then work on the whole search)

    show = sub.add_parser("show", help="state, progress, MLflow run and reason of one job")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print the job as JSON")
    show.set_defaults(handler=cmd_show)

    wait = sub.add_parser("wait", help="wait until a job ends; exit 0 only if it succeeded")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds")
    wait.set_defaults(handler=cmd_wait)

    cancel = sub.add_parser("cancel", help="stop a running job or remove a queued one")
    cancel.add_argument("id")
    cancel.add_argument(
        "--wait", type=float, default=15.0, help="seconds to wait for it to stop (default 15)"
    )
    cancel.set_defaults(handler=cmd_cancel)

    resume = sub.add_parser(
        "resume",
        help="continue an interrupted or cancelled job from its last saved epoch, in the same MLflow run",
    )
    resume.add_argument("id")
    resume.add_argument("--more", help="a search: give it this much more time (e.g. 10m) and go on")
    resume.add_argument("--more-trials", type=int, help="a search: allow this many more trials")
    resume.set_defaults(handler=cmd_resume)

    delete = sub.add_parser("delete", help="delete a queued or finished job from the list")
    delete.add_argument("id")
    delete.set_defaults(handler=cmd_delete)
    return jobs


def cmd_submit(args: argparse.Namespace) -> int:
    from studio.cli.spec import spec_from_args
    from studio.jobs import submit_job

    job = submit_job(spec_from_args(args))
    print(job.id)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from studio.jobs import list_jobs

    jobs = list_jobs(limit=args.limit, states=args.state)
    from studio.cli.search import search_rows

    searches = [] if args.state else search_rows(args.limit)
    if not jobs and not searches:
        print("No jobs yet. Queue one with `python -m studio jobs submit --data FILE.csv`.")
        return 0
    rows = [("ID", "STATE", "NAME", "PROGRESS", "CREATED"), *searches]
    rows += [(j.id, state_words(j), _name(j), j.progress_text, _when(j.created_at)) for j in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from studio.cli import search

    if search.is_search_id(args.id):
        return search.show_search(args.id, args.json)
    from studio.jobs import get_job

    job = get_job(args.id)
    if args.json:
        data = asdict(job)
        data["progress_text"] = job.progress_text
        data["log_path"] = str(job.log_path)
        data["can_resume"] = job.can_resume
        print(json.dumps(data, indent=2))
        return 0
    lines = [
        ("job", job.id),
        ("name", job.name),
        ("state", state_words(job)),
        ("progress", job.progress_text),
        ("device", job.device or "-"),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("ended", _when(job.ended_at)),
        ("mlflow run", job.mlflow_run_id or "-"),
    ]
    if job.reason:  # a succeeded job's reason is a note on how it ended (an earlier epoch kept)
        lines.append(("reason" if job.state != "succeeded" else "note", job.reason))
    if job.note:  # what happened on the way: resumed, retried with a smaller batch
        lines.append(("note", job.note))
    if job.can_resume:
        checkpoint = job.checkpoint
        saved = f"epoch {checkpoint.epoch}" if checkpoint else "its last saved epoch"
        lines.append(("resume", f"python -m studio jobs resume {job.id}  (continues after {saved})"))
    if job.metrics:
        lines.append(("last metrics", _metrics(job.metrics)))
    if job.test_metrics:
        lines.append(("test metrics", _metrics(job.test_metrics)))
    guess = {key: value for key, value in job.quality.items() if key.startswith(quality.BASELINE)}
    if guess and job.test_metrics:
        lines.append(("guess's metrics", _metrics(guess)))
    if job.state == "succeeded":
        lines.extend(quality.outcome_lines(job.spec, job.outcome))
        lines.extend(("ensemble", text) for text in ensembles.lines(job.outcome))
    if job.bundle_path:
        lines.append(("model bundle", job.bundle_path))
    lines.append(("log", str(job.log_path)))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from studio.cli import search

    if search.is_search_id(args.id):
        return search.wait_search_cmd(args.id, args.timeout)
    from studio.jobs import ensure_scheduler, get_job, wait_for_job

    if get_job(args.id).is_active:
        ensure_scheduler()  # a queued job needs a scheduler to ever end
    job = wait_for_job(args.id, timeout=args.timeout)
    print(_summary(job))
    return 0 if job.state == "succeeded" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    from studio.cli import search

    if search.is_search_id(args.id):
        return search.cancel_search_cmd(args.id, args.wait)
    from studio.jobs import cancel_job, wait_for_job

    job = cancel_job(args.id)
    if job.is_active and args.wait > 0:
        print(f"Stopping {job.id} …", flush=True)
        job = wait_for_job(job.id, timeout=args.wait)
    print(_summary(job))
    return 0 if not job.is_active else 1


def cmd_resume(args: argparse.Namespace) -> int:
    from studio.cli import search

    if search.is_search_id(args.id):
        return search.resume_search_cmd(args.id, args.more, args.more_trials)
    from studio.jobs import resume_job

    job = resume_job(args.id)
    saved = job.checkpoint
    after = f" after epoch {saved.epoch}" if saved else ""
    print(f"{job.id}: queued to resume{after}, in the same MLflow run. `jobs wait {job.id}` follows it.")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from studio.jobs import delete_job

    delete_job(args.id)
    print(f"Deleted {args.id}.")
    return 0


def state_words(job) -> str:
    """The job's state, with ``— can resume`` for an interrupted or cancelled job that saved progress (a
    search's pruned trial says ``pruned``)."""
    if getattr(job, "trial_state", None) == "pruned" and not job.is_active:
        return "pruned"
    return f"{job.state} — can resume" if job.can_resume else job.state


def _summary(job) -> str:
    text = f"{job.id}: {state_words(job)}"
    if job.state == "running":
        text += f" ({job.progress_text})"
    if job.reason:
        text += f" - {job.reason}"
    return text


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _name(job) -> str:
    """The job's name, or for a search's trial which trial of which search it is."""
    if job.search_id is not None:
        return f"trial {job.trial_number} of {job.search_id}"
    label = ensembles.short_label(job.quality)
    return _clip(job.name, 32) + (f" ({label})" if label else "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in sorted(metrics.items()))
