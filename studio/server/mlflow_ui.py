"""``python -m studio.server.mlflow_ui ARGS``: MLflow's ``mlflow ui ARGS`` as one process, without the
GenAI job runner.

``mlflow ui`` is a launcher: it checks the store, then starts the web server (uvicorn) as a child and
waits for it, and (MLflow 3) starts a job runner with a Huey consumer per queue for GenAI features
(evaluation jobs, online scoring) the studio never uses: ten processes of ~240 MB each. Here MLflow's
own launcher prepares everything as usual, and then *becomes* the web server (``exec``) instead of
starting it as a child, so the imports of the launcher are freed and serve's process group holds one
process. Job execution is off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``) unless the environment
asks for it; when it does, MLflow's ordinary launcher runs, job runner included.
"""

from __future__ import annotations

import os
import sys

JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def job_execution_wanted(env: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether the user asked for MLflow's job execution (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``)."""
    return env.get(JOB_EXECUTION_ENV, "").strip().lower() in ("true", "1", "yes", "on")


def _exec_server(cmd: list[str], *, extra_env: dict[str, str] | None = None, **_: object) -> None:
    """Stands in for MLflow's ``_exec_cmd(cmd, extra_env=…, synchronous=False)``: run the web server in
    this process instead of a child (never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, {**os.environ, **(extra_env or {})})


def main(argv: list[str]) -> None:
    os.environ.setdefault(JOB_EXECUTION_ENV, "false")
    import mlflow.server
    from mlflow.cli import cli

    if not job_execution_wanted() and hasattr(mlflow.server, "_exec_cmd"):
        mlflow.server._exec_cmd = _exec_server  # (another MLflow: the ordinary launcher and its child)
    cli.main(args=["ui", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
