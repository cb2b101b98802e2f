"""The model bundle: one zip that predicts without the studio (write, read, load, predict).

Every kind of data shares one layout (the zip's root is an MLflow model folder, so
``mlflow.pyfunc.load_model`` opens it unzipped)::

    MLmodel, python_env.yaml, requirements.txt, conda.yaml   MLflow (explicit pip requirements)
    training_studio_pyfunc.py        the "models from code" entry (a copy of studio/bundle/pyfunc.py)
    artifacts/studio_model.json      kind, format version, task, predictor, preprocessing/target/network
                                     state, input columns, metrics, spec, example rows, ONNX description
    artifacts/weights.pt             the network's state dict (read with ``weights_only=True``)
    artifacts/training_studio_runtime.py   a copy of studio/core/runtime.py
    artifacts/training_studio_<name>.py    the kind's own shipped code (its predictor may live there)
    artifacts/files/                 files the kind's predictor reads (a tokenizer …), when it has any
    artifacts/model.onnx             the network alone, dynamic batch axis (absent if export failed)
    README.md                        what the files are and how to use them

What differs between kinds (what a bundle needs installed, the usage snippet, the README's words, the
checks of ``studio_model.json`` and what ``LoadedBundle.predict`` accepts) is the kind's
:class:`BundleFlavour`, registered with :func:`register_flavour` from the kind's own package; a kind
without one gets the defaults (raw table rows in).

Nothing in the bundle is a pickle and nothing imports ``studio``. Importing this module is cheap
(``python_snippet`` is used by the pages); torch and mlflow are imported by the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "training-studio-bundle"
FORMAT_VERSION = 1

CODE_PREFIX = "training_studio_"
"""Shipped code files are named ``training_studio_<artifact>.py`` (the artifact ``runtime``, ``image_io`` …)."""
ENTRY_FILE = f"{CODE_PREFIX}pyfunc.py"
RUNTIME_FILE = f"{CODE_PREFIX}runtime.py"
FILES_DIR = "files"
"""A folder of files a kind's predictor reads (a pretrained text network's tokenizer and configuration)."""
INFO_FILE = "studio_model.json"
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
INFO_MEMBER = f"artifacts/{INFO_FILE}"
MAX_UNPACKED_BYTES = 8 * 2**30

_log = logging.getLogger(__name__)
_CORE = Path(__file__).resolve().parents[1] / "core"
_HERE = Path(__file__).resolve().parent


def _table_input(data_filename: str) -> str:
    return (
        "# The columns of the original CSV; extra columns are ignored, missing values are allowed.\n"
        f"rows = pd.read_csv({data_filename!r})\n"
        "predictions = model.predict(rows)  # predicted_<target> (+ probability_<class> per class)\n"
    )


def _table_title(info: dict[str, Any]) -> str:
    return f"{info['task']} of `{info['target']['name']}`"


def _table_predicts(info: dict[str, Any]) -> str:
    return (
        f"`predict` takes the raw columns of the training CSV and returns `predicted_{info['target']['name']}`"
        + (" and one `probability_<class>` column per class" if info["target"].get("classes") else "")
        + ", then `prediction_warning`: empty when the row looks like the training data, else why its "
        "prediction is a guess (every input empty, or a number far outside the values seen in training)."
    )


@dataclass(frozen=True)
class BundleFlavour:
    """What the generic bundle code asks of a kind of data about its bundles. Every field has the
    default of a model that takes raw table rows (a DataFrame of the training CSV's columns)."""

    kind: str
    """The bundle's ``kind`` in ``studio_model.json`` (the data kind's name)."""
    needs: str = "mlflow, torch and pandas"
    """What a bundle of this kind needs installed to predict, in words ("mlflow, torch and pandas")."""
    example_data: str = "data.csv"
    """The data file the usage snippet reads when the caller names none."""
    snippet_input: Callable[[str], str] = _table_input
    """The snippet's lines that build the model's input from a data file and call ``model.predict``
    (assigning ``predictions``), after the lines that unpack and load the bundle."""
    title: Callable[[dict[str, Any]], str] = _table_title
    """The README's heading after "Training Studio model: ", from the bundle's info."""
    predicts: Callable[[dict[str, Any]], str] = _table_predicts
    """The README's sentence on what ``predict`` takes and returns, from the bundle's info."""
    info_holds: str = "preprocessing, target, network, input columns, metrics and the run spec"
    """What ``studio_model.json`` holds, for the README."""
    code_files: str = f"`artifacts/{RUNTIME_FILE}`: the preprocessing and network code"
    """The README's line on the shipped code files."""
    check_info: Callable[[dict[str, Any], str], None] | None = None
    """Checks a bundle's info (and the bundle's file name) beyond the format: raises
    :class:`~studio.core.errors.BundleError` for a damaged one."""
    as_input: Callable[[Any], Any] | None = None
    """Turns what ``LoadedBundle.predict`` was given into the model's DataFrame (raising ``ValueError`` or
    ``TypeError`` with a plain sentence); ``None``: table rows, checked to share a column with the model."""
    loads_without_predictor: bool = False
    """Bundles of this kind written before ``studio_model.json`` named its ``predictor`` still load (their
    own pyfunc entry knows the kind)."""


_FLAVOURS: dict[str, BundleFlavour] = {}


def register_flavour(flavour: BundleFlavour) -> BundleFlavour:
    """Make ``flavour`` what the bundle code knows of ``flavour.kind``'s bundles (registering again
    replaces it)."""
    _FLAVOURS[flavour.kind] = flavour
    return flavour


def flavours() -> dict[str, BundleFlavour]:
    """Every registered flavour by kind (the kinds' registrations are imported first)."""
    from studio.core.tasks import load_plugins

    load_plugins()
    return dict(_FLAVOURS)


def flavour(kind: str) -> BundleFlavour:
    """The flavour of ``kind``'s bundles; the table-rows defaults for a kind that registered none."""
    return flavours().get(kind) or BundleFlavour(kind)


def needs(kind: str) -> str:
    """What a bundle of ``kind`` needs installed to predict, in words."""
    return flavour(kind).needs


def python_snippet(bundle_filename: str, data_filename: str | None = None, kind: str = "") -> str:
    """Python a user copies to predict with a downloaded bundle of ``kind``, with only what
    :func:`needs` says installed; ``data_filename`` is the data it predicts for (the kind's example when
    not given)."""
    how = flavour(kind)
    name = Path(bundle_filename).name
    folder = Path(name).stem if name.lower().endswith(".zip") else f"{name}_model"
    return (
        "import zipfile\n\n"
        "import mlflow\n"
        "import pandas as pd\n\n"
        f"zipfile.ZipFile({bundle_filename!r}).extractall({folder!r})\n"
        f"model = mlflow.pyfunc.load_model({folder!r})\n\n"
        + how.snippet_input(data_filename or how.example_data)
        + "print(predictions.head())\n"
    )


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """No artifact progress bars, no advice about type hints or signatures while saving/loading."""
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with _quiet_loggers("mlflow.pyfunc", "mlflow.models"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous
