"""Where the studio keeps its files. Every default works on a laptop with nothing else installed."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
SEARCH_STORAGE_ENV = "STUDIO_SEARCH_STORAGE"
"""An SQLAlchemy URL where the searches' Optuna studies live instead of their journal files (needed when
trials run on other machines, e.g. Ray's nodes, which must reach it)."""


def studio_home() -> Path:
    """The studio's data folder (``STUDIO_HOME``, default ``./studio_data``), created on demand."""
    home = Path(os.environ.get("STUDIO_HOME", "studio_data")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def tracking_uri() -> str:
    """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or the embedded SQLite store under ``mlruns/``.

    The embedded default is made absolute, so a worker started from another folder writes to the same
    store, and its folder is created (SQLite does not create parent folders).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip() or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        db = Path(uri.removeprefix("sqlite:///")).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db}"
    elif uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def artifact_root() -> Path:
    """Where artifacts go for the embedded store: ``mlruns/artifacts`` beside the SQLite file."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    else:
        root = Path("mlruns/artifacts").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


NO_MLFLOW_TELEMETRY = "MLFLOW_DISABLE_TELEMETRY"


def keep_mlflow_offline() -> None:
    """MLflow 3 fetches a telemetry setting from the internet and reports usage; the studio, and every
    process it starts (they inherit the environment), does neither unless the user asked for it."""
    os.environ.setdefault(NO_MLFLOW_TELEMETRY, "true")


_REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """The environment for the processes the studio starts (scheduler, workers): same data folder, same
    MLflow store, the studio importable, MLflow offline."""
    keep_mlflow_offline()
    env = dict(os.environ)
    env["STUDIO_HOME"] = str(studio_home())
    env["MLFLOW_TRACKING_URI"] = tracking_uri()
    paths = [str(_REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env
