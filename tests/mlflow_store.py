"""New, empty MLflow stores for tests, made in a tenth of a second instead of six to eight.

MLflow builds a new SQLite store by running its whole chain of schema migrations (alembic), which takes
6-8 s on this 2-core machine, and the tests make a fresh store for almost every test. Each test process
builds one store once, the way the studio does (``tracking.client()``), and every test then gets a copy
of that file: byte for byte what a new store is, since nothing has been written to it but the schema
and MLflow's own ``Default`` experiment (whose artifact folder is set to what a new store made here
would give it). ``tests/test_tracking.py`` still makes a store from nothing, with processes racing.

The built store is kept in the temporary folder under the installed MLflow's version
(``studio-mlflow-template-<version>-<uid>.db``), so the next test process, and the next run of the tests
on this machine, copy it instead of building it again (a new MLflow version builds a new one).
"""

from __future__ import annotations

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
            import os
            from importlib.metadata import version

            kept = Path(tempfile.gettempdir()) / f"studio-mlflow-template-{version('mlflow')}-{os.getuid()}.db"
            if not _is_store(kept):
                from mlflow.tracking import MlflowClient

                folder = Path(tempfile.mkdtemp(prefix="studio-mlflow-template-"))
                path = folder / "mlflow.db"
                client = MlflowClient(tracking_uri=f"sqlite:///{path}")
                client.search_experiments(max_results=1)  # runs the migrations and makes 'Default'
                os.replace(path, kept)  # whole or not at all, when test processes race to keep theirs
                shutil.rmtree(folder, ignore_errors=True)
            _template = kept
    return _template


def _is_store(path: Path) -> bool:
    """Whether ``path`` is a built store: MLflow's tables there, and its ``Default`` experiment."""
    if not path.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM experiments WHERE experiment_id = 0").fetchone() == (1,)
    except sqlite3.Error:
        return False


def new_store(folder: Path, default_artifacts: str | None = None) -> str:
    """The ``sqlite:///`` URI of a new, empty MLflow store at ``folder/mlflow.db`` (``folder`` is made).
    Its ``Default`` experiment keeps its artifacts at ``default_artifacts`` (a server's
    ``mlflow-artifacts:/0``), or where MLflow puts them for a store made in this process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "mlflow.db"
    if not target.exists():
        shutil.copyfile(_built_template(), target)
        # MLflow gives its 'Default' experiment the folder ./mlruns/0 of the process that made the store
        with sqlite3.connect(target) as db:
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (default_artifacts or str(Path.cwd() / "mlruns" / "0"),),
            )
        db.close()
    return f"sqlite:///{target}"
