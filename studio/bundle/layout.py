"""The model bundle: one zip that predicts without the studio (write, read, load, predict).

Two kinds share one layout: ``tabular`` (raw table rows in) and ``image`` (picture paths or bytes in).
Layout (the zip's root is an MLflow model folder, so ``mlflow.pyfunc.load_model`` opens it unzipped)::

    MLmodel, python_env.yaml, requirements.txt, conda.yaml   MLflow (explicit pip requirements)
    training_studio_pyfunc.py        the "models from code" entry (a copy of studio/bundle/pyfunc.py)
    artifacts/studio_model.json      kind, format version, task, preprocessing/target/network state,
                                     input columns, metrics, spec, example rows, ONNX description
    artifacts/weights.pt             the network's state dict (read with ``weights_only=True``)
    artifacts/training_studio_runtime.py   a copy of studio/core/runtime.py
    artifacts/training_studio_image_io.py  (image bundles) a copy of studio/core/image_io.py: reads pictures
    artifacts/model.onnx             the network alone, dynamic batch axis (absent if export failed)
    README.md                        what the files are and how to use them

An image bundle's ``studio_model.json`` holds the classes (``target.classes``) and the preprocessing
(``size``, resize rule, ``mean``/``std``); its ONNX input is the normalised ``float [batch, 3, size, size]``.

Nothing in the bundle is a pickle and nothing imports ``studio``. Importing this module is cheap
(``python_snippet`` is used by the pages); torch and mlflow are imported by the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

FORMAT = "training-studio-bundle"
FORMAT_VERSION = 1
KIND_TABULAR = "tabular"
KIND_IMAGE = "image"
KIND_TEXT = "text"
KINDS = (KIND_TABULAR, KIND_IMAGE, KIND_TEXT)
"""The studio's own kinds. A bundle of another kind is read when its ``studio_model.json`` names the
``predictor`` that loads it (a kind registered through ``STUDIO_MODALITIES`` writes such bundles)."""

CODE_PREFIX = "training_studio_"
"""Shipped code files are named ``training_studio_<artifact>.py`` (the artifact ``runtime``, ``image_io`` …)."""
ENTRY_FILE = f"{CODE_PREFIX}pyfunc.py"
RUNTIME_FILE = f"{CODE_PREFIX}runtime.py"
IMAGE_IO_FILE = f"{CODE_PREFIX}image_io.py"
TEXT_RUNTIME_FILE = f"{CODE_PREFIX}text_runtime.py"
TRANSFORMER_RUNTIME_FILE = f"{CODE_PREFIX}transformer_runtime.py"
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


NEEDS = {
    KIND_TABULAR: "mlflow, torch and pandas",
    KIND_IMAGE: "mlflow, torch, torchvision, pillow and pandas",
    KIND_TEXT: "mlflow, torch and pandas (and transformers for a pretrained network)",
}
"""What a bundle of each kind needs installed to predict (beyond Python)."""


def python_snippet(bundle_filename: str, data_filename: str = "data.csv", kind: str = KIND_TABULAR) -> str:
    """Python a user copies to predict with a downloaded bundle, with only mlflow, torch and pandas
    (and torchvision and pillow for an ``image`` bundle, whose ``data_filename`` is a picture)."""
    name = Path(bundle_filename).name
    folder = Path(name).stem if name.lower().endswith(".zip") else f"{name}_model"
    if kind == KIND_IMAGE:
        picture = data_filename if data_filename != "data.csv" else "photo.jpg"
        return (
            "import zipfile\n\n"
            "import mlflow\n"
            "import pandas as pd\n\n"
            f"zipfile.ZipFile({bundle_filename!r}).extractall({folder!r})\n"
            f"model = mlflow.pyfunc.load_model({folder!r})\n\n"
            "# One row per picture: a file path, or the file's bytes.\n"
            f"pictures = pd.DataFrame({{'image': [{picture!r}]}})\n"
            "predictions = model.predict(pictures)  # predicted_label + probability_<class> per class\n"
            "print(predictions.head())\n"
        )
    return (
        "import zipfile\n\n"
        "import mlflow\n"
        "import pandas as pd\n\n"
        f"zipfile.ZipFile({bundle_filename!r}).extractall({folder!r})\n"
        f"model = mlflow.pyfunc.load_model({folder!r})\n\n"
        "# The columns of the original CSV; extra columns are ignored, missing values are allowed.\n"
        f"rows = pd.read_csv({data_filename!r})\n"
        "predictions = model.predict(rows)  # predicted_<target> (+ probability_<class> per class)\n"
        "print(predictions.head())\n"
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
