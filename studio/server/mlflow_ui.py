"""``python -m studio.server.mlflow_ui ARGS``: MLflow's ``mlflow ui ARGS`` as one process, without the
GenAI job runner.

``mlflow ui`` is a launcher: it checks the store, then starts the web server (uvicorn) as a child and
waits for it, and (MLflow 3) starts a job runner with a Huey consumer per queue for GenAI features
(evaluation jobs, online scoring) the studio never uses: ten processes of ~240 MB each. Here MLflow's
own launcher prepares everything as usual (the store, the settings it hands the server in the
environment), and then the web server runs *in this process* (uvicorn's own command line, with the
arguments MLflow built) instead of in a child: serve's process group holds one process, and the server
does not import MLflow's server code a second time (the launcher already has): the UI answers ~3.5 s
and ~3.5 CPU-s sooner, with the same memory. uvicorn is imported before ``mlflow.server``, so MLflow
sees that it runs as a server and puts its security middleware (allowed hosts, CORS) on its app, as
in the web server it would start. Job execution is off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``)
unless the environment asks for it; when it does, MLflow's ordinary launcher runs, job runner included.
"""

from __future__ import annotations

import os
import sys

JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def job_execution_wanted(env: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether the user asked for MLflow's job execution (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``)."""
    return env.get(JOB_EXECUTION_ENV, "").strip().lower() in ("true", "1", "yes", "on")


def _serve_here(cmd: list[str], *, extra_env: dict[str, str] | None = None, **_: object) -> None:
    """Stands in for MLflow's ``_exec_cmd(cmd, extra_env=…, synchronous=False)``, whose ``cmd`` is
    ``python -m uvicorn OPTIONS APP``: run that uvicorn command line in this process (returns when the
    server stops)."""
    os.environ.update(extra_env or {})
    from uvicorn.main import main as uvicorn_main

    uvicorn_main.main(args=cmd[cmd.index("uvicorn") + 1 :], prog_name="uvicorn")


def main(argv: list[str]) -> None:
    os.environ.setdefault(JOB_EXECUTION_ENV, "false")
    serve_here = not job_execution_wanted()
    if serve_here:
        import uvicorn  # noqa: F401  (before mlflow.server: it then knows it runs as a server)
    import mlflow.server
    from mlflow.cli import cli

    if serve_here and hasattr(mlflow.server, "_exec_cmd"):
        mlflow.server._exec_cmd = _serve_here  # (another MLflow: the ordinary launcher and its child)
    cli.main(args=["ui", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
