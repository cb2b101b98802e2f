"""New, empty MLflow stores for tests, made in a tenth of a second instead of six to eight.

MLflow builds a new SQLite store by running its whole chain of schema migrations (alembic), which takes
6-8 s on this 2-core machine, and the tests make a fresh store for almost every test. Each test process
builds one store once, the way the studio does (``tracking.client()``), and every test then gets a copy
of that file: byte for byte what a new store is, since nothing has been written to it but the schema
and MLflow's own ``Default`` experiment (whose artifact folder is set to what a new store made here
would give it). ``tests/test_tracking.py`` still makes a store from nothing, with processes racing.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_template: Path | None = None


def _built_template() -> Path:
    global _template
    with _lock:
        if _template is None:
            from mlflow.tracking import MlflowClient

            folder = Path(tempfile.mkdtemp(prefix="studio-mlflow-template-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = folder / "mlflow.db"
            client = MlflowClient(tracking_uri=f"sqlite:///{path}")
            client.search_experiments(max_results=1)  # runs the migrations and makes 'Default'
            _template = path
    return _template


def new_store(folder: Path) -> str:
    """The ``sqlite:///`` URI of a new, empty MLflow store at ``folder/mlflow.db`` (``folder`` is made)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "mlflow.db"
    if not target.exists():
        shutil.copyfile(_built_template(), target)
        # MLflow gives its 'Default' experiment the folder ./mlruns/0 of the process that made the store
        with sqlite3.connect(target) as db:
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (str(Path.cwd() / "mlruns" / "0"),),
            )
        db.close()
    return f"sqlite:///{target}"
