"""``python -m studio serve``: the web studio, the MLflow UI and the job scheduler, started together.

What runs, and who stops it:

- the Streamlit app (``app.py`` + ``pages/``) and the MLflow UI on the same store are children of this
  command, each in its own process group. The MLflow UI is one process (:mod:`studio.server.mlflow_ui`:
  ``mlflow ui --workers 1`` without its launcher process and without MLflow's GenAI job runner). Ctrl-C
  (SIGINT), SIGTERM or closing the terminal (SIGHUP) stops both: SIGTERM to the group, then SIGKILL
  after a grace period, all within :data:`STOP_SECONDS`.
- the job scheduler is a detached daemon (``studio.jobs.ensure_scheduler``) and training workers run in
  their own sessions, so stopping the studio never stops a run. On the way out serve stops the scheduler
  (and with it the warm standby worker) only when no job is queued or running; otherwise it is left
  running so queued jobs still start and running ones are still recorded, and it exits by itself once
  the queue has been empty for a while. ``--no-standby`` keeps no warm worker (about 1 GB less while
  idle; each job's first step comes ~10 s later).
- the first-start sample and the MLflow store are prepared in a short-lived child
  (``python -m studio.server.serve prepare``), so their imports (pandas, MLflow) do not stay in this
  process's memory while it watches the others.

A port that is already taken ends the command with one plain line and exit code 2, before anything is
started. On the first start with an empty store the wine sample is added, so a newcomer can train
something straight away.

Login (:mod:`studio.server.auth`): on an address other computers can reach (``0.0.0.0``, ``::``, a LAN
address), or with ``--login``, the app asks for a user name and password, and the MLflow UI listens on
127.0.0.1 only, behind :mod:`studio.server.mlflow_proxy` on the public MLflow port. Without any user the
command refuses to start (one plain line, exit code 2). ``STUDIO_PASSWORD`` (and ``STUDIO_USER``,
default ``admin``) adds or updates that user first, for Docker; no child process sees the password. Nothing calls out to the internet:
Streamlit gets ``browser.serverAddress`` and no usage statistics, its external-address lookup is
switched off (:func:`run_streamlit`), and MLflow's telemetry is off (``MLFLOW_DISABLE_TELEMETRY``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

EXIT_USER_ERROR = 2
REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PATH = REPO_ROOT / "app.py"
SEEDED_MARKER = ".sample_added"
STOP_SECONDS = 10.0  # Ctrl-C to the last process gone, at most
STOP_GRACE_SECONDS = 6.0  # SIGTERM to SIGKILL for the servers (the scheduler is stopped meanwhile)
APP_START_TIMEOUT = 90.0
MLFLOW_START_TIMEOUT = 180.0
PASSWORD_ENV = "STUDIO_PASSWORD"
USER_ENV = "STUDIO_USER"
DEFAULT_USER = "admin"
SHOWN_ADDRESSES = 4
SHARED_MLFLOW_ENV = "STUDIO_MLFLOW_UI_SHARED"  # set for the app when --mlflow-uri names a shared server


class PortInUse(Exception):
    """A port the studio needs is taken; the message says which option picks another one."""


class LoginMissing(Exception):
    """The studio needs a login and cannot have one; the message says how to add a user."""


# --------------------------------------------------------------------------- ports and addresses
def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now (checked the way servers bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a port held only by closing connections still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_ports(host: str, port: int, mlflow_port: int) -> None:
    """Raise :class:`PortInUse` with a plain message when either port cannot be used."""
    if port == mlflow_port:
        raise PortInUse(
            f"the studio and the MLflow UI cannot share port {port}: pass --mlflow-port {port + 1}"
        )
    for number, option in ((port, "--port"), (mlflow_port, "--mlflow-port")):
        if not 0 < number < 65536:
            raise PortInUse(f"port {number} is not a port number: pass {option} with a number like 8501")
        try:
            taken = port_in_use(host, number)
        except OSError as err:
            raise PortInUse(f"cannot listen on {host}:{number} ({err.strerror}): check --host") from err
        if taken:
            suggestion = free_port_near(host, number + 1, avoid={port, mlflow_port})
            raise PortInUse(f"port {number} is in use: pass {option} {suggestion} (or stop what uses it)")


def free_port_near(host: str, start: int, avoid: set[int] = frozenset()) -> int:
    """The first free port from ``start`` on (a suggestion for the user)."""
    for number in range(start, min(start + 100, 65536)):
        if number not in avoid and not port_in_use(host, number):
            return number
    return start


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (for a server only this machine talks to)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def browser_host(host: str) -> str:
    """The address a browser on this machine uses for a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def url_for(host: str, port: int) -> str:
    shown = browser_host(host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def reachable_hosts(host: str) -> list[str]:
    """The addresses other computers can use for a server bound to ``host``.

    For a wildcard (``0.0.0.0``; ``::`` also adds global IPv6 addresses) these are this machine's
    non-loopback interface addresses, read from the interfaces themselves (nothing is sent anywhere).
    """
    if host not in ("0.0.0.0", "", "::"):
        return [host]
    import ipaddress

    import psutil

    found: list[str] = []
    families = (socket.AF_INET, socket.AF_INET6) if host == "::" else (socket.AF_INET,)
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in families:
                continue
            text = address.address.split("%")[0]
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified) and text not in found:
                found.append(text)
    return found


def public_urls(host: str, port: int) -> list[str]:
    """``http://…:port`` for each address of :func:`reachable_hosts` (a loopback URL when there is none)."""
    hosts = reachable_hosts(host) or [browser_host(host)]
    return [f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}" for h in hosts]


def for_browser(url: str, host_header: object) -> str:
    """``url`` (a server started by serve) with the host name this browser used to reach the studio
    (its ``Host`` header), so a link to the MLflow UI works from wherever the studio was opened: another
    computer, or a Docker host through a published port."""
    if not isinstance(host_header, str) or not host_header.strip():
        return url
    if os.environ.get(SHARED_MLFLOW_ENV) == "1":  # a shared MLflow server lives on its own machine
        return url
    seen = urlsplit(f"//{host_header.strip()}").hostname
    parts = urlsplit(url)
    if not seen or not parts.hostname or seen == parts.hostname:
        return url
    shown = f"[{seen}]" if ":" in seen else seen
    return parts._replace(netloc=f"{shown}:{parts.port}" if parts.port else shown).geturl()


def answers_http(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


# --------------------------------------------------------------------------- child processes
def _child_setup() -> Callable[[], None]:
    """What the child runs before exec: its own process group, and SIGTERM when serve itself dies."""
    prctl = None
    if sys.platform == "linux":
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: nothing to import after fork

    def setup() -> None:
        os.setsid()
        if prctl is not None:
            prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: a killed serve leaves no server behind

    return setup


@dataclass
class Child:
    """A server started by serve, in its own process group, its output in a log file."""

    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup(),  # serve starts its children from its main thread only
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)


def stop_children(children: list[Child], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every child's process group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    started = [c for c in children if c.proc is not None]
    for child in started:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for child in started:
        # The group may hold helpers (uvicorn workers) even when the leader has exited.
        child.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)


def server_env(mlflow_url: str | None, login: bool = False, shared: bool = False) -> dict[str, str]:
    """The environment of the servers: the same store, the studio importable, the MLflow UI's address
    (``shared``: a shared server's, which links keep as it is), whether the app asks for a login (never
    the start-up password itself)."""
    from studio.core.settings import child_env
    from studio.server import auth

    env = child_env()
    env.pop("STUDIO_MLFLOW_UI_URL", None)
    env.pop(SHARED_MLFLOW_ENV, None)
    env.pop(PASSWORD_ENV, None)
    env.pop(auth.LOGIN_ENV, None)
    if mlflow_url:
        env["STUDIO_MLFLOW_UI_URL"] = mlflow_url
    if shared:
        env[SHARED_MLFLOW_ENV] = "1"
    if login:
        env[auth.LOGIN_ENV] = "1"
    return env


def streamlit_command(app: Path, host: str, port: int, server_address: str | None = None) -> list[str]:
    """Streamlit on ``host:port``, run through :func:`run_streamlit` so it never asks the internet for
    this machine's address. ``browser.serverAddress`` (the address people use) also stops the lookup
    Streamlit's start-up banner makes for a wildcard host; XSRF protection stays on (the default).

    Two of Streamlit's defaults are for people editing an app, not for a studio that trains on the same
    cores (Streamlit 1.67; measured on 2 cores with Chromium on the run page of a training job):

    - ``server.fileWatcherType none``: no watching of the app's source files for edits. After each page
      run that imported something new, Streamlit walks every loaded module (thousands once torch and
      MLflow are in) to watch its file.
    - ``runner.postScriptGC false``: no full garbage collection after every page run. The run page reruns
      every 1-2 s while a job trains, and each forced collection walks every object the page server
      holds; Python's own collector still runs as objects are made.

    With both off the page server takes about half the CPU while a run is watched, at the same memory
    (the numbers: README, "What `serve` starts and what it costs").

    ``streamlit run app.py`` (for editing the pages) keeps Streamlit's defaults."""
    return [
        sys.executable,
        "-m",
        "studio.server.serve",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.serverAddress",
        server_address or browser_host(host),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--runner.postScriptGC",
        "false",
    ]


def stop_external_ip_lookup() -> None:
    """Streamlit 1.67 asks checkip.amazonaws.com for this machine's address (``net_util.get_external_ip``)
    to print an "External URL" and to judge a WebSocket whose Origin is another site; the studio never
    calls out, so the answer is always "unknown" (such a WebSocket is refused, as it would be offline)."""
    from streamlit import net_util

    net_util.get_external_ip = lambda: None


def run_streamlit(argv: list[str]) -> None:
    """``streamlit *argv`` in this process, without the external-address lookup."""
    stop_external_ip_lookup()
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *argv]
    main(prog_name="streamlit")


def mlflow_command(host: str, port: int) -> list[str]:
    """The MLflow UI on the studio's store: one process, no GenAI job runner (:mod:`studio.server.mlflow_ui`)."""
    from studio.core import settings

    return [
        sys.executable,
        "-m",
        "studio.server.mlflow_ui",
        "--workers",
        "1",
        "--backend-store-uri",
        settings.tracking_uri(),
        "--default-artifact-root",
        settings.artifact_root().as_uri(),
        "--host",
        host,
        "--port",
        str(port),
    ]


def use_shared_mlflow(uri: str) -> str | None:
    """Make ``uri`` the tracking URI of this process and every process it starts (``MLFLOW_TRACKING_URI``);
    returns the address of its web UI for the pages' links (an ``http(s)`` server without any
    ``user:password@``), or None for a store with no UI (e.g. ``postgresql://``). An HTTP server that
    does not answer is a ``ValueError`` with a plain sentence."""
    uri = uri.strip().rstrip("/")
    parts = urlsplit(uri)
    if not parts.scheme:
        raise ValueError(
            f"--mlflow-uri needs a full address such as http://mlflow.example:5000 (got '{uri}')"
        )
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if parts.scheme not in ("http", "https"):
        return None
    shown = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    if not answers_http(f"{shown}/health", timeout=10):
        raise ValueError(
            f"the MLflow server at {shown} does not answer (GET {shown}/health failed): start it, or check "
            "the address given to --mlflow-uri"
        )
    return shown


# --------------------------------------------------------------------------- login
def apply_start_password(say: Callable[[str], None]) -> None:
    """Add (or update) the user ``STUDIO_USER`` (default ``admin``) when ``STUDIO_PASSWORD`` is set, and
    take the password out of this process's environment, so no server, scheduler or worker sees it."""
    from studio.server import auth

    password = os.environ.pop(PASSWORD_ENV, "")
    if not password:
        return
    name = os.environ.get(USER_ENV, "").strip() or DEFAULT_USER
    try:
        change = auth.ensure_user(name, password)
    except auth.AuthError as err:
        raise LoginMissing(f"{PASSWORD_ENV} (for the user '{name}') cannot be used: {err}") from err
    if change != "unchanged":
        verb = "Added" if change == "added" else "Set the password of"
        say(f"{verb} the user '{name}' from {PASSWORD_ENV}.")


def check_login(host: str, forced: bool) -> str:
    """Make sure someone can log in; returns a line about the login for the console, or raises
    :class:`LoginMissing` saying how to add a user."""
    from studio.server import auth

    try:
        timeout = auth.idle_timeout_seconds()
        users = auth.list_users()
    except auth.AuthError as err:
        raise LoginMissing(str(err)) from err
    path = auth.password_file()
    if not users:
        why = "was started with --login" if forced else f"listens on {host}, which other computers can reach"
        raise LoginMissing(
            f"the studio {why}, so it needs a login, and it has no user yet: add one with "
            f"`python -m studio users add NAME` (users are kept in {path}), or set {PASSWORD_ENV} "
            f"(user {USER_ENV}, default {DEFAULT_USER}), e.g. `docker run -e {PASSWORD_ENV}=… …`; then start it again"
        )
    return (
        f"Login is on: {len(users)} user{'s' if len(users) != 1 else ''} in {path}; "
        f"a session ends after {auth.idle_words(timeout)} without use."
    )


# --------------------------------------------------------------------------- first start
def add_sample_on_first_start(say: Callable[[str], None]) -> None:
    """Add the wine sample when the store has never held a data set (only once: deleting it sticks)."""
    from studio.core import settings

    marker = settings.studio_home() / SEEDED_MARKER
    if marker.exists():
        return
    from studio.core.errors import StudioError
    from studio.data import add_sample, list_datasets

    if not list_datasets():
        try:
            info = add_sample("wine")
        except StudioError as err:
            say(f"Could not add the wine sample data set ({err}); upload a CSV on the Data page instead.")
            return
        say(f"Added the sample data set '{info.name}' so you can train something right away.")
    marker.write_text("The wine sample was offered on the first start; it is not added again.\n")


def prepare(mlflow_store: bool, say: Callable[[str], None]) -> None:
    """What serve does before it starts the servers: the sample on the first start and (``mlflow_store``)
    the MLflow store, created or upgraded once, under the studio's lock, before the MLflow UI and the
    workers open it (both migrating a new store at once breaks it)."""
    add_sample_on_first_start(say)
    if mlflow_store:
        from studio import tracking

        tracking.client()


def prepare_in_child(mlflow_store: bool, log_path: Path, say: Callable[[str], None]) -> None:
    """:func:`prepare` in a short-lived child (its own session, so Ctrl-C reaches serve only): pandas and
    MLflow (~300 MB) are imported there, not in serve, which runs for as long as the studio does. Its
    lines go to ``say``; its errors to ``log_path``, with one plain line here."""
    from studio.core import settings

    if not mlflow_store and (settings.studio_home() / SEEDED_MARKER).exists():
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "studio.server.serve", "prepare", *(["--mlflow-store"] if mlflow_store else [])]
    with open(log_path, "ab") as errors:
        done = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=settings.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
            check=False,
        )
    for line in done.stdout.splitlines():
        say(line)
    if done.returncode != 0:
        what = "the MLflow store and the sample data set" if mlflow_store else "the sample data set"
        say(f"Could not prepare {what} (exit code {done.returncode}); the details are in {log_path}.")


# --------------------------------------------------------------------------- the command
def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) must not stop the shutdown
        print(message, flush=True)


def _settle_scheduler(say: Callable[[str], None]) -> None:
    """Stop the scheduler when nothing is queued or running; otherwise leave it to finish the queue."""
    from studio.jobs import ensure_scheduler, list_jobs, stop_scheduler
    from studio.jobs.store import ACTIVE_STATES

    active = list_jobs(states=ACTIVE_STATES, actions=True)
    if active:
        say(
            f"{len(active)} training job(s) are still queued or running; they carry on in the background "
            "(see `python -m studio jobs list`) and show up in the studio when you start it again."
        )
        return
    stop_scheduler(timeout=STOP_GRACE_SECONDS)
    if list_jobs(states=ACTIVE_STATES, actions=True):  # submitted from elsewhere while it was stopping
        ensure_scheduler()


def serve(
    host: str = "127.0.0.1",
    port: int = 8501,
    mlflow_port: int = 5000,
    open_browser: bool = False,
    *,
    login: bool = False,
    app: Path | None = None,
    mlflow_ui: bool = True,
    mlflow_uri: str | None = None,
    mlflow_link: str | None = None,
    standby: bool = True,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = _say,
) -> int:
    """Run the studio until Ctrl-C / SIGTERM (or ``stop`` is set). Returns the exit code.

    A login is required when ``host`` is reachable from other computers, or when ``login`` is set.
    ``app`` and ``mlflow_ui=False`` let tests start a stand-in app without the MLflow UI.
    ``mlflow_uri`` (``--mlflow-uri``): track every run on that shared MLflow server; no local MLflow UI
    is started and the pages link to the server's own UI (at ``mlflow_link`` when browsers reach it at
    another address than the studio does, e.g. ``http://mlflow:5000`` inside Docker).
    ``standby=False`` (``--no-standby``): the scheduler keeps no warm worker waiting for the next job.
    """
    from studio.server import auth

    exposed = not auth.is_loopback(host)
    login = login or exposed
    shared_mlflow = None
    if mlflow_uri:
        try:
            shared_mlflow = use_shared_mlflow(mlflow_uri)
            if mlflow_link:
                shared_mlflow = mlflow_link.strip().rstrip("/")
        except ValueError as err:
            print(str(err), file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        mlflow_ui = False
    try:
        check_ports(host, port, mlflow_port if mlflow_ui else port + 1)
        apply_start_password(say)
        login_line = check_login(host, forced=not exposed) if login else None
    except (PortInUse, LoginMissing) as err:
        print(str(err), file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    app = Path(app or APP_PATH).resolve()
    if not app.is_file():
        print(f"the studio's app is missing: {app} does not exist", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR

    from studio.core import settings, system
    from studio.jobs import ensure_scheduler
    from studio.jobs.executors.local import STANDBY_ENV

    settings.keep_mlflow_offline()  # (for the MLflow UI, the scheduler and its workers too)
    if not standby:
        os.environ[STANDBY_ENV] = "0"  # read by the scheduler this command starts
    stop = stop or threading.Event()
    restore_signals = system.stop_on_signals(stop)
    logs = settings.studio_home() / "logs"
    shown_urls = public_urls(host, port)
    shown_host = urlsplit(shown_urls[0]).hostname or browser_host(host)
    # The app puts the host the browser used into its MLflow link (``for_browser``); loopback here keeps
    # links that cannot do that working on this computer and on a Docker host.
    mlflow_url = url_for(host, mlflow_port) if mlflow_ui else None
    # Behind the login the MLflow UI itself listens on loopback only; the proxy takes the public port.
    mlflow_internal = ("127.0.0.1", free_loopback_port()) if login and mlflow_ui else None
    mlflow_health = (
        f"http://127.0.0.1:{mlflow_internal[1]}" if mlflow_internal else url_for(host, mlflow_port)
    )
    env = server_env(mlflow_url or shared_mlflow, login, shared=bool(mlflow_uri))
    studio = Child(
        "studio", streamlit_command(app, host, port, shown_host), logs / "streamlit.log", env, app.parent
    )
    children = [studio]
    if mlflow_ui:
        bind = mlflow_internal or (host, mlflow_port)
        children.append(Child("mlflow", mlflow_command(*bind), logs / "mlflow-ui.log", env, REPO_ROOT))
    proxy = None
    try:
        say("Starting Training Studio… (Ctrl-C stops it)")
        if login_line:
            say(login_line)
        prepare_in_child(mlflow_ui, logs / "prepare.log", say)
        if mlflow_internal:
            from studio.server.mlflow_proxy import start_proxy

            proxy = start_proxy((host, mlflow_port), mlflow_internal)
        ensure_scheduler()
        for child in children:
            if not stop.is_set():  # (a Ctrl-C while preparing)
                child.start()
        code = _watch(
            studio,
            children[1:],
            Addresses(
                url_for(host, port),
                shown_urls,
                public_urls(host, mlflow_port)[0] if mlflow_ui else shared_mlflow,
                mlflow_health,
                login,
                shared=shared_mlflow is not None,
            ),
            stop,
            open_browser,
            say,
        )
    finally:
        say("Stopping Training Studio…")
        if proxy is not None:
            from studio.server.mlflow_proxy import stop_proxy

            stop_proxy(proxy)
        # The scheduler (and its standby worker) stops while the servers do: all gone within STOP_SECONDS.
        settling = threading.Thread(target=_settle_scheduler, args=(say,), name="settle-scheduler")
        settling.start()
        try:
            stop_children(children)
            settling.join()
        finally:
            restore_signals()
    say("Stopped.")
    return code


@dataclass
class Addresses:
    """Where serve's servers answer: ``local`` is checked from here, ``shown`` is what people open."""

    local: str
    shown: list[str]
    mlflow: str | None  # the MLflow UI as people open it (None: not started)
    mlflow_health: str
    login: bool
    shared: bool = False  # ``mlflow`` is a shared MLflow server's UI (``--mlflow-uri``), not started here

    def ready_line(self) -> str:
        first, others = self.shown[0], self.shown[1:SHOWN_ADDRESSES]
        line = f"Training Studio is ready: open {first} in your browser"
        if others:
            line += f" (or {', '.join(others)}{', …' if len(self.shown) > SHOWN_ADDRESSES else ''})"
        if self.local not in self.shown:
            line += f"; on this computer: {self.local}"
        return line + ("; log in with a studio user." if self.login else ".")


def _watch(
    studio: Child,
    others: list[Child],
    addresses: Addresses,
    stop: threading.Event,
    open_browser: bool,
    say: Callable[[str], None],
) -> int:
    """Announce each server once it answers; return when asked to stop (0) or the studio dies (1)."""
    studio_url, mlflow_url = addresses.local, addresses.mlflow
    mlflow = others[0] if others else None
    started = time.monotonic()
    studio_ready = mlflow_ready = mlflow_gone = False
    if mlflow is None and addresses.shared and addresses.mlflow:
        from studio.tracking import mlflow_ui_home_url

        say(f"Runs are tracked on the shared MLflow server; its UI: {mlflow_ui_home_url(addresses.mlflow)}")
    elif mlflow is None and addresses.shared:
        say("Runs are tracked in the MLflow store given by --mlflow-uri; it has no web UI to link to.")
    elif mlflow is None:
        say("The MLflow UI is not started; run pages hide its links.")
    while not stop.is_set():
        if not studio.running():
            say(f"The studio server stopped unexpectedly; its log is {studio.log_path}")
            return 1
        if not studio_ready:
            if answers_http(f"{studio_url}/_stcore/health"):
                studio_ready = True
                say(addresses.ready_line())
                if open_browser:
                    import webbrowser

                    webbrowser.open(studio_url)
            elif time.monotonic() - started > APP_START_TIMEOUT:
                say(
                    f"The studio server did not answer within {APP_START_TIMEOUT:.0f} s; its log is {studio.log_path}"
                )
                return 1
        if mlflow is not None and not mlflow_ready and not mlflow_gone:
            if not mlflow.running():
                mlflow_gone = True
                say(
                    f"The MLflow UI could not start (its log is {mlflow.log_path}); the studio works without it."
                )
            elif answers_http(f"{addresses.mlflow_health}/health"):
                mlflow_ready = True
                from studio.tracking import mlflow_ui_home_url

                guarded = " (it asks for a studio user name and password)" if addresses.login else ""
                say(f"MLflow UI ready at {mlflow_ui_home_url(mlflow_url)}{guarded}")
            elif time.monotonic() - started > MLFLOW_START_TIMEOUT:
                mlflow_gone = True
                say(f"The MLflow UI is still not answering; its log is {mlflow.log_path}")
        stop.wait(0.5 if studio_ready and (mlflow_ready or mlflow_gone or mlflow is None) else 0.25)
    return 0


if __name__ == "__main__":
    # ``python -m studio.server.serve streamlit run …`` and ``… prepare [--mlflow-store]``: how serve starts
    # Streamlit and prepares the stores.
    if sys.argv[1:2] == ["streamlit"]:
        run_streamlit(sys.argv[2:])
    elif sys.argv[1:2] == ["prepare"]:
        prepare("--mlflow-store" in sys.argv[2:], _say)
    else:
        sys.exit(
            "usage: python -m studio.server.serve streamlit run APP [options] (use `python -m studio serve`)"
        )
