"""Running a bundle where the studio is not installed: a fresh Python process in which ``studio`` and
``lightning_modules`` cannot be imported (any attempt is recorded, and fails)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("studio", "lightning_modules")
    attempts = []

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"{name} cannot be imported in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)
"""Python that, run first, makes ``studio`` and ``lightning_modules`` unimportable; ``attempts`` lists the
names tried, ``BLOCKED`` the blocked packages."""

PREDICT = BLOCKER + textwrap.dedent(
    """
    import json, zipfile

    import mlflow
    import pandas as pd

    zipfile.ZipFile("model.zip").extractall("model")
    model = mlflow.pyfunc.load_model("model")
    model.predict(pd.read_parquet("input.parquet")).to_parquet("predictions.parquet")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    json.dump({"attempts": attempts, "loaded": loaded}, open("imports.json", "w"))
    """
)


def run_outside(work: Path, script: str, timeout: int = 180) -> None:
    """Run ``script`` in ``work`` with this Python, without the studio on the path (no ``PYTHONPATH``,
    not started from the repository); fails the test with its error when it fails."""
    (work / "runner.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "runner.py"], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]


def predict_outside(bundle_zip: Path, inputs: pd.DataFrame, work: Path) -> pd.DataFrame:
    """The predictions of the bundle at ``bundle_zip`` for ``inputs`` (raw table rows, or an ``image``
    column of picture paths), made by ``mlflow.pyfunc`` in a process where the studio cannot be imported."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.zip").write_bytes(Path(bundle_zip).read_bytes())
    inputs.reset_index(drop=True).to_parquet(work / "input.parquet")
    run_outside(work, PREDICT)
    imports = json.loads((work / "imports.json").read_text())
    assert imports == {"attempts": [], "loaded": []}, imports
    return pd.read_parquet(work / "predictions.parquet")
