"""``python -m studio``: the same functions the web app calls, from a terminal.

Only argparse is imported at start; each command imports what it needs, so ``datasets list`` or
``jobs list`` answer instantly and only ``train`` pays for torch and Lightning. Every user error ends
with one plain line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from studio.cli.spec import add_train_options, spec_from_args

EXIT_USER_ERROR = 2


# --------------------------------------------------------------------------- commands
def _console_hooks(quiet: bool) -> Any:
    """Progress on stderr: one self-updating line on a terminal, a line every few epochs otherwise."""
    from studio.engine.training import TrainHooks

    class ConsoleProgress(TrainHooks):
        def __init__(self) -> None:
            self.tty = sys.stderr.isatty()
            self.last_epoch = 0

        def on_run_started(self, run_id: str, experiment_id: str) -> None:
            print(f"MLflow run {run_id} started", file=sys.stderr, flush=True)

        def on_progress(self, progress: Any) -> None:
            if quiet:
                return
            shown = [
                f"{k} {v:.4g}" for k, v in progress.metrics.items() if k.startswith(("train/loss", "val/"))
            ]
            bar = "#" * int(progress.fraction * 20)
            line = f"epoch {progress.epoch}/{progress.max_epochs} [{bar:<20}] " + " · ".join(shown)
            if self.tty:
                print("\r" + line[:150].ljust(150), end="", file=sys.stderr, flush=True)
            elif progress.epoch != self.last_epoch and progress.epoch % 10 == 1:
                print(line, file=sys.stderr, flush=True)
            self.last_epoch = progress.epoch

    return ConsoleProgress()


def cmd_train(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    from studio.modalities.llm.models import say_where_it_comes_from

    say_where_it_comes_from(spec)  # a base model: what a download fetches, before it does
    from studio.core import ensembles
    from studio.core.quality import outcome_lines
    from studio.engine.training import train

    print(
        f"Training {spec.architecture.name} on {spec.data.dataset_id} → '{spec.data.target}' ({spec.task})",
        flush=True,
    )
    hooks = _console_hooks(args.quiet)
    result = train(spec, bundle_out=args.bundle_out, hooks=hooks)
    if hooks.tty and not args.quiet:
        print(file=sys.stderr)
    print(f"MLflow run id: {result.run_id}")
    if result.first_point_seconds is not None:
        print(f"First training step logged {result.first_point_seconds:.2f} s after training started")
    if result.ignored_columns:
        ignored = "; ".join(f"{k} ({v})" for k, v in result.ignored_columns.items())
        print(f"Columns left out: {ignored}")
    if result.dropped_rows:
        print(f"Rows without a target were dropped: {result.dropped_rows}")
    print(f"Stopped after {result.epochs_run} epochs (best: {result.best_epoch}) in {result.seconds:.1f} s")
    if result.note:  # e.g. the loss became NaN and the best earlier epoch was kept
        print(f"Note: {result.note}")
    print("Test metrics:")
    for key, value in sorted(result.test_metrics.items()):
        print(f"  {key:<16} {value:.4f}")
    for _, text in outcome_lines(spec, {**result.test_metrics, **result.quality}):
        print(text)
    for text in ensembles.lines({**result.test_metrics, **result.quality}):
        print(text)
    if result.bundle_path:
        print(f"Model bundle: {result.bundle_path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from studio.modalities import predict_csv

    frame = predict_csv(args.bundle, args.data, args.out)
    if args.out:
        print(f"Wrote {len(frame)} predictions to {args.out}")
    else:
        print(frame.to_csv(index=False), end="")
    flagged = _flagged_rows(frame)
    if flagged:
        print(
            f"warning: {flagged} of {len(frame)} rows are guesses (their inputs are empty or far outside the "
            "training range); the prediction_warning column says why.",
            file=sys.stderr,
        )
    return 0


def _flagged_rows(frame: Any) -> int:
    """Rows whose ``prediction_warning`` is not empty (bundles before runtime version 2 have no such column)."""
    from studio.core.runtime import WARNING_COLUMN

    if WARNING_COLUMN not in frame:
        return 0
    return int((frame[WARNING_COLUMN].fillna("").astype(str).str.len() > 0).sum())


def cmd_datasets_add(args: argparse.Namespace) -> int:
    from studio.core.tasks import data_kind, described_reading
    from studio.core.text import counted
    from studio.data import add_data_file, load_profile

    info = add_data_file(args.file, name=args.name)
    profile = load_profile(info.id)
    kind = data_kind(info.kind)
    print(info.id)
    if not kind.columns:  # a folder of files in class folders (pictures)
        classes = [c["name"] for c in profile["classes"]]
        shown = ", ".join(classes[:10]) + (" …" if len(classes) > 10 else "")
        print(
            f"{counted(info.n_rows, kind.unit)} in {len(classes)} classes ({shown}); "
            f"train with: python -m studio train --data {info.id}"
        )
    elif (described := described_reading(profile, info.id)) is not None:
        print("\n".join(described))
        return 0
    else:
        suggested = profile.get("suggested_target")
        print(
            f"{info.n_rows} rows × {info.n_cols} columns; "
            + (
                f"suggested target: {suggested} ({profile.get('suggested_task')})"
                if suggested
                else "no suggested target: say which column to predict with --target COLUMN"
            )
        )
    for warning in profile.get("warnings", []):
        print(f"warning: {warning['message']} → {warning['action']}")
    return 0


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from studio.core.tasks import data_word
    from studio.data import list_datasets, load_profile

    rows = list_datasets()
    if not rows:
        print("No data sets yet. Add one: python -m studio datasets add FILE.csv")
        return 0
    print(f"{'ID':<28} {'ROWS':>8} {'COLS':>5}  {'KIND':<24}  NAME")
    for info in rows:
        kind = data_word(info.kind, load_profile(info.id))
        print(f"{info.id:<28} {info.n_rows:>8} {info.n_cols:>5}  {kind:<24}  {info.name}")
    return 0


def cmd_datasets_show(args: argparse.Namespace) -> int:
    from studio.core.tasks import described_reading
    from studio.data import column_readings, get_dataset, load_profile

    info = get_dataset(args.id)
    profile = load_profile(info.id)
    print(f"{info.name} ({info.id}): {info.n_rows} rows × {info.n_cols} columns, from {info.source_file}")
    described = described_reading(profile, info.id)
    if described is not None:
        print("\n".join(described))
        return 0
    print(f"{'COLUMN':<30} {'KIND':<12} {'MISSING':>8} {'DISTINCT':>9}")
    for col in profile["columns"]:
        distinct = (">=" if col.get("distinct_at_least") else "") + str(col["distinct"])
        print(f"{col['name'][:30]:<30} {col['kind']:<12} {col['missing_share']:>8.1%} {distinct:>9}")
    for reading in column_readings(profile):
        print(f"read as: {reading['message']}")
    for warning in profile.get("warnings", []):
        print(f"warning: {warning['message']} → {warning['action']}")
    return 0


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    from studio.jobs import delete_dataset

    delete_dataset(args.id)
    print(f"Deleted {args.id}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from studio.server.serve import serve

    return serve(
        host=args.host,
        port=args.port,
        mlflow_port=args.mlflow_port,
        open_browser=False,
        login=args.login,
        mlflow_uri=args.mlflow_uri,
        mlflow_link=args.mlflow_link,
        mlflow_ui=not args.no_mlflow_ui,
        standby=not args.no_standby,
    )


def _new_password(args: argparse.Namespace) -> str:
    """The password for ``users add``: the first line of stdin with ``--password-stdin``, else typed twice."""
    from studio.server.auth import AuthError, check_new_password

    if args.password_stdin:
        return check_new_password(sys.stdin.readline().rstrip("\r\n"))
    if not sys.stdin.isatty():
        raise AuthError(
            "Type the password at a terminal, or pass --password-stdin and send it on standard input."
        )
    import getpass

    password = check_new_password(getpass.getpass(f"Password for {args.name}: "))
    if getpass.getpass("The same password again: ") != password:
        raise AuthError("The two passwords differ; nothing was changed.")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from studio.server.auth import add_user, check_name, password_file

    check_name(args.name)
    new = add_user(args.name, _new_password(args))
    print(f"{'Added' if new else 'Changed the password of'} '{args.name}' in {password_file()}.")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from studio.server.auth import list_users, password_file

    names = list_users()
    if not names:
        print(f"No users yet (in {password_file()}). Add one: python -m studio users add NAME")
        return 0
    for name in names:
        print(name)
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from studio.server.auth import password_file, remove_user

    remove_user(args.name)
    print(f"Removed '{args.name}' from {password_file()}; their open sessions end at their next click.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m studio", description="Training Studio: train models without code."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the web studio, the MLflow UI and the job scheduler")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--mlflow-port", type=int, default=5000)
    serve.add_argument(
        "--mlflow-uri",
        help="track runs on this shared MLflow server (e.g. http://mlflow.example:5000) instead of a local "
        "store; no local MLflow UI is started and the pages link to the server's",
    )
    serve.add_argument(
        "--mlflow-link",
        help="with --mlflow-uri: the server's address as people's browsers reach it, when it differs "
        "(e.g. --mlflow-uri http://mlflow:5000 inside Docker, --mlflow-link http://team-host:5000)",
    )
    serve.add_argument(
        "--login",
        action="store_true",
        help="ask for a user name and password even on 127.0.0.1 (always on for other addresses)",
    )
    serve.add_argument(
        "--no-standby",
        action="store_true",
        help="keep no warm worker waiting for the next job: about 1 GB less memory while idle, and each "
        "job's first step ~10 s later (torch, Lightning and MLflow are imported when it starts)",
    )
    serve.add_argument(
        "--no-mlflow-ui",
        action="store_true",
        help="start no MLflow UI: about 250 MB less memory; runs are still tracked in MLflow and the "
        "studio's Runs and Compare pages show them, only the links to the MLflow UI are hidden",
    )
    serve.set_defaults(handler=cmd_serve)

    users = sub.add_parser("users", help="add, list and remove the people who may log in")
    usub = users.add_subparsers(dest="users_command", required=True)
    add_user = usub.add_parser("add", help="add a user, or set the password of an existing one")
    add_user.add_argument("name")
    add_user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    add_user.set_defaults(handler=cmd_users_add)
    usub.add_parser("list", help="list the users").set_defaults(handler=cmd_users_list)
    remove_user = usub.add_parser("remove", help="remove a user")
    remove_user.add_argument("name")
    remove_user.set_defaults(handler=cmd_users_remove)

    train = sub.add_parser("train", help="train a model in the foreground")
    add_train_options(train)
    train.add_argument("--bundle-out", help="where to write the model bundle (.zip)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=cmd_train)

    predict = sub.add_parser("predict", help="predict new rows with a model bundle")
    predict.add_argument("bundle", help="the model bundle (.zip)")
    predict.add_argument(
        "data", help="a CSV file of rows like the training data, or pictures (a file, folder or zip)"
    )
    predict.add_argument("--out", help="write predictions to this CSV (default: print them)")
    predict.set_defaults(handler=cmd_predict)

    datasets = sub.add_parser("datasets", help="add, list, show and delete data sets")
    dsub = datasets.add_subparsers(dest="datasets_command", required=True)
    add = dsub.add_parser("add", help="add a CSV file, or a zip of picture folders (one folder per class)")
    add.add_argument("file")
    add.add_argument("--name")
    add.set_defaults(handler=cmd_datasets_add)
    dsub.add_parser("list", help="list stored data sets").set_defaults(handler=cmd_datasets_list)
    show = dsub.add_parser("show", help="show a data set's profile")
    show.add_argument("id")
    show.set_defaults(handler=cmd_datasets_show)
    delete = dsub.add_parser("delete", help="delete a data set")
    delete.add_argument("id")
    delete.set_defaults(handler=cmd_datasets_delete)

    try:
        from studio.cli.jobs import add_jobs_parser
    except ImportError:  # the jobs commands are optional while they are being built
        add_jobs_parser = None
    if add_jobs_parser is not None:
        add_jobs_parser(sub, add_train_options)
    from studio.cli.search import add_search_parser

    add_search_parser(sub, add_train_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    from studio.core.errors import StudioError
    from studio.core.settings import keep_mlflow_offline

    keep_mlflow_offline()  # (train, jobs and the scheduler they may start)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USER_ERROR
