"""Running a bundle where the studio is not installed: a Python process of its own in which ``studio`` and
``lightning_modules`` cannot be imported (any attempt is recorded, and fails)."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from pathlib import Path

import pandas as pd

from tests.forkserver import ForkServer, ServerEnded

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


PRELOAD = "import mlflow.pyfunc, numpy, pandas, pyarrow.parquet, torch"
"""What every script run outside imports anyway (~4 CPU-s), once, in the fork server. (Not transformers
or huggingface_hub: they read HF_HOME and such when imported, and a script may set them.)"""


def _outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("STUDIO_")}


SERVER = ForkServer(PRELOAD, cwd=lambda: tempfile.mkdtemp(prefix="studio-outside-"), env=_outside_env)
"""The fork server for outside runs: started outside the repository and without ``PYTHONPATH``, so
``studio`` is not importable in it either (``tests.forkserver``)."""


def run_outside(
    work: Path,
    script: str,
    timeout: int = 180,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    base_env: dict[str, str] | None = None,
) -> str:
    """Run ``script`` as ``runner.py ARGS…`` in ``work`` with this Python, where the studio cannot be
    imported (no ``PYTHONPATH``, not started from the repository), in a process of its own: a fork of
    :data:`SERVER`. Its environment is ``base_env`` (default: this process's) without
    ``PYTHONPATH``, plus ``env``. Returns the script's standard output; fails the test with its error
    output when it fails or runs past ``timeout`` seconds."""
    work = Path(work).resolve()
    (work / "runner.py").write_text(script)
    base = os.environ if base_env is None else base_env
    request = {
        "cwd": str(work),
        "script": "runner.py",
        "args": [str(arg) for arg in args or []],
        "env": {k: v for k, v in base.items() if k != "PYTHONPATH"} | (env or {}),
        "stdout": str(work / "runner.out"),
        "stderr": str(work / "runner.err"),
    }
    try:
        code = SERVER.run(request, timeout)
    except TimeoutError:
        raise AssertionError(f"runner.py ran past {timeout} s") from None
    except ServerEnded:
        raise RuntimeError("the fork server for outside runs ended while it ran this script") from None
    assert code == 0, (work / "runner.err").read_text()[-3000:]
    return (work / "runner.out").read_text()


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
