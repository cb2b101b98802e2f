"""What ``python -m studio serve`` holds: resident memory and processes, idle, during a tabular run and
after it, printed per process.

Starts ``serve`` (Streamlit, the MLflow UI, the scheduler and, unless ``--no-standby``, the warm standby
worker) on free ports with a fresh studio folder and MLflow store, then

1. idle: waits until both servers answer and the processes' memory has settled (``--settle`` seconds
   after the start at least), and prints every process it started;
2. during a run: submits a tabular job (``jobs submit --data sample:wine --epochs N``) and prints the
   moment of the run with the most memory in total, and how long the job took from submit to its end;
3. after it: prints them again once the job has ended and memory has settled;
4. stops ``serve`` with SIGTERM and says how long it took until none of its processes was left.

With ``--browser`` a headless Chromium (Debian's, through Playwright) keeps the studio's home page open
throughout, so Streamlit holds a session as it does for a user (the browser itself is not counted).

Every process is counted by its resident set (RSS, what ``ps`` and the issue measure; shared pages are
counted in each process that maps them) and its unique set (USS, what would be freed if it exited).
The exit code is 1 when a zombie was seen, MLflow's job runner ran, a process outlived the stop by more
than 10 s, or the idle total exceeds ``--max-idle-mb``; ``make test`` runs the ``--tiny`` size
(``tests/test_bench.py``, its output in ``test-artifacts/footprint.txt``).

    python bench/footprint.py [--no-standby] [--browser] [--epochs 20] [--settle 45] [--max-idle-mb 1500]
                              [--port P] [--mlflow-port Q]
    python bench/footprint.py --tiny
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
STOP_LIMIT_SECONDS = 10.0
JOB_RUNNER_MARKERS = ("huey_consumer", "mlflow.server.jobs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def role(cmdline: list[str]) -> str:
    """What a process of the studio is, from its command line."""
    text = " ".join(cmdline)
    if any(marker in text for marker in JOB_RUNNER_MARKERS):
        return "MLflow job runner (GenAI jobs)"
    if "studio.server.serve streamlit" in text:
        return "Streamlit (the web studio)"
    if "studio serve" in text:
        return "serve (watches the others)"
    if "uvicorn" in text or "gunicorn" in text or "fastapi_app" in text or "studio.server.mlflow_ui" in text:
        return "MLflow UI server (uvicorn)"
    if "mlflow ui" in text or "mlflow server" in text or "mlflow.server" in text:
        return "MLflow UI launcher"
    if "studio.cli.worker --standby" in text:
        return "standby worker (torch, Lightning, MLflow imported)"
    if "studio.cli.worker" in text:
        return "training worker"
    if "studio.search.driver" in text:
        return "search driver"
    if "-m studio.jobs" in text:
        return "scheduler"
    return "other: " + text[:60]


@dataclass
class Row:
    pid: int
    role: str
    rss: int
    uss: int
    zombie: bool


def studio_processes(root: int, home: Path) -> list[psutil.Process]:
    """``serve`` and everything it started: its descendants, and processes of this studio folder that
    were handed to init (a daemon whose parent exited)."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        top = psutil.Process(root)
        found[root] = top
        for child in top.children(recursive=True):
            found[child.pid] = child
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("STUDIO_HOME") == str(home):
                found[proc.pid] = proc
    return list(found.values())


def snapshot(root: int, home: Path) -> list[Row]:
    rows = []
    for proc in studio_processes(root, home):
        try:
            with proc.oneshot():
                zombie = proc.status() == psutil.STATUS_ZOMBIE
                if zombie:
                    rows.append(Row(proc.pid, "zombie (exited, not reaped)", 0, 0, True))
                    continue
                info = proc.memory_full_info()
                rows.append(Row(proc.pid, role(proc.cmdline()), info.rss, info.uss, False))
        except psutil.Error:
            continue
    return sorted(rows, key=lambda r: -r.rss)


def total(rows: list[Row]) -> int:
    return sum(r.rss for r in rows)


def show(title: str, rows: list[Row]) -> None:
    print(f"\n{title}: {len(rows)} processes, {total(rows) / MB:.0f} MB resident "
          f"({sum(r.uss for r in rows) / MB:.0f} MB unique)")
    print(f"  {'pid':>7}  {'RSS MB':>7}  {'USS MB':>7}  process")
    for r in rows:
        print(f"  {r.pid:>7}  {r.rss / MB:>7.0f}  {r.uss / MB:>7.0f}  {r.role}")


def settled(root: int, home: Path, *, least: float, started: float, limit: float, want: set[str]) -> list[Row]:
    """The processes once every role in ``want`` runs, ``least`` seconds have passed since ``started``
    and the total RSS moved by under 2% over 3 s (or ``limit`` seconds passed)."""
    history: list[int] = []
    while True:
        rows = snapshot(root, home)
        history.append(total(rows))
        roles = {r.role for r in rows}
        steady = len(history) >= 7 and max(history[-7:]) <= 1.02 * min(history[-7:])
        ready = all(any(w in r for r in roles) for w in want)
        now = time.monotonic()
        if (steady and ready and now - started >= least) or now - started >= limit:
            return rows
        time.sleep(0.5)


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not print '{text}':\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.25)


def run_job(env: dict[str, str], epochs: int, root: int, home: Path) -> tuple[list[Row], float, str]:
    """Submit a tabular job and follow it; returns the fullest moment, seconds to its end, its state."""
    sys.path.insert(0, str(REPO))
    os.environ.update(STUDIO_HOME=env["STUDIO_HOME"], MLFLOW_TRACKING_URI=env["MLFLOW_TRACKING_URI"])
    from studio.jobs import store

    submitted = time.monotonic()
    job_id = subprocess.run(
        [sys.executable, "-m", "studio", "jobs", "submit", "--data", "sample:wine", "--epochs", str(epochs)],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    fullest: list[Row] = []
    while True:
        rows = snapshot(root, home)
        if total(rows) > total(fullest):
            fullest = rows
        job = store.get_job(job_id)
        if not job.is_active:
            return fullest, time.monotonic() - submitted, job.state
        time.sleep(0.25)


def stop(proc: subprocess.Popen, root: int, home: Path) -> tuple[float, list[Row]]:
    """SIGTERM to serve; seconds until none of its processes is left (or what was left after the limit)."""
    tracked = studio_processes(root, home)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_LIMIT_SECONDS + 20)
    while time.monotonic() - started < STOP_LIMIT_SECONDS + 20:
        alive = [p for p in tracked if p.is_running() and p.pid != proc.pid]
        alive = [p for p in alive if _status(p) not in (None, psutil.STATUS_ZOMBIE)]
        if not alive and proc.poll() is not None:
            return time.monotonic() - started, []
        time.sleep(0.1)
    return time.monotonic() - started, snapshot(root, home)


def _status(proc: psutil.Process) -> str | None:
    try:
        return proc.status()
    except psutil.Error:
        return None


@contextlib.contextmanager
def browser_on(url: str):
    """The studio's home page open in headless Chromium until the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("[data-testid='stSidebarNav'], [data-testid='stMain']", timeout=60_000)
        try:
            yield page
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-standby", action="store_true", help="start serve with --no-standby")
    parser.add_argument("--browser", action="store_true", help="keep the home page open in headless Chromium")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the tabular run (default 20)")
    parser.add_argument("--settle", type=float, default=45.0, help="measure idle this long after the start at least")
    parser.add_argument("--max-idle-mb", type=float, help="fail when idle serve holds more than this (RSS)")
    parser.add_argument(
        "--tiny", action="store_true", help="the CI size: a 2-epoch run, no wait to settle, idle ≤ 1500 MB"
    )
    parser.add_argument("--port", type=int, help="serve's web port (default: a free one)")
    parser.add_argument("--mlflow-port", type=int, help="serve's MLflow UI port (default: a free one)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.settle = 2, 0.0
        if args.max_idle_mb is None:
            args.max_idle_mb = 700.0 if args.no_standby else 1500.0

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="studio-footprint-") as tmp:
        folder = Path(tmp)
        home = folder / "home"
        env = dict(os.environ, STUDIO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlruns/mlflow.db",
                   PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        port, mlflow_port = args.port or free_port(), args.mlflow_port or free_port()
        cmd = [sys.executable, "-m", "studio", "serve", "--port", str(port), "--mlflow-port", str(mlflow_port)]
        if args.no_standby:
            cmd.append("--no-standby")
        output = folder / "serve.out"
        started = time.monotonic()
        with open(output, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        browser = contextlib.ExitStack()
        try:
            wait_for_line(output, "is ready", proc, 180)
            if args.browser:
                browser.enter_context(browser_on(f"http://127.0.0.1:{port}"))
            wait_for_line(output, "MLflow UI ready", proc, 240)
            print(f"serve{' --no-standby' if args.no_standby else ''}: both servers answer after "
                  f"{time.monotonic() - started:.1f} s")
            want = {"Streamlit", "MLflow UI", "scheduler"} | (set() if args.no_standby else {"standby"})
            idle = settled(proc.pid, home, least=args.settle, started=started, limit=args.settle + 120, want=want)
            show(f"idle, {time.monotonic() - started:.0f} s after the start", idle)

            fullest, seconds, state = run_job(env, args.epochs, proc.pid, home)
            show(f"during a tabular run (wine, {args.epochs} epochs; the moment with the most memory)", fullest)
            print(f"  the run {state} {seconds:.1f} s after it was submitted")
            ended = time.monotonic()
            while any(r.role == "training worker" for r in snapshot(proc.pid, home)) and time.monotonic() - ended < 30:
                time.sleep(0.25)  # a fresh (not warm) worker exits once its run is recorded
            after = settled(proc.pid, home, least=0, started=time.monotonic(), limit=30, want=set())
            show("after the run", after)

            seen = idle + fullest + after
            if any(r.zombie for r in seen):
                failures.append(f"{sum(r.zombie for r in seen)} zombie process(es) seen")
            if any(r.role.startswith("MLflow job runner") for r in seen):
                failures.append("MLflow's job runner runs, though the studio never uses it")
            if state != "succeeded":
                failures.append(f"the run ended {state}")
            if args.max_idle_mb and total(idle) / MB > args.max_idle_mb:
                failures.append(f"idle serve holds {total(idle) / MB:.0f} MB, over {args.max_idle_mb:.0f} MB")
        finally:
            browser.close()
            seconds, left = stop(proc, proc.pid, home)
            for row in left:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(row.pid).kill()
        print(f"\nstopped (SIGTERM) in {seconds:.1f} s" + (f"; left behind: {len(left)}" if left else ""))
        if left:
            show("left behind after the stop", left)
            failures.append(f"{len(left)} process(es) outlived the stop by {STOP_LIMIT_SECONDS + 20:.0f} s")
        elif seconds > STOP_LIMIT_SECONDS:
            failures.append(f"stopping took {seconds:.1f} s, over {STOP_LIMIT_SECONDS:.0f} s")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
