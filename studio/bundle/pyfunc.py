"""The MLflow "models from code" entry of a Training Studio model bundle.

The bundle ships this file as ``training_studio_pyfunc.py`` beside its ``MLmodel``; MLflow runs it when
the model is saved and again when ``mlflow.pyfunc.load_model`` opens the bundle. It must never import
``studio``: a bundle predicts where the studio is not installed. Everything it needs travels as MLflow
artifacts: ``studio_model.json`` (preprocessing, target and network state as plain JSON), ``weights.pt``
(a state dict read with ``weights_only=True``) and ``training_studio_runtime.py`` (a copy of
``studio/core/runtime.py``; image bundles add ``training_studio_image_io.py``, a copy of
``studio/core/image_io.py``), imported from their files under names of their own so that two bundles
loaded in one process each keep the runtime they were written with.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow
import pandas as pd


def _import_runtime(path: str) -> ModuleType:
    name = f"{Path(path).stem}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def as_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame from what callers pass: a DataFrame, records (a list of dicts), one row as a dict
    or Series, or a dict of columns."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, pd.Series):
        return rows.to_frame().T
    if isinstance(rows, dict):
        columns = any(isinstance(v, (list, tuple, pd.Series)) for v in rows.values())
        return pd.DataFrame(rows) if columns else pd.DataFrame([rows])
    if isinstance(rows, (list, tuple)):
        return pd.DataFrame(list(rows))
    raise TypeError(
        f"predict takes a pandas DataFrame or a list of dicts (one per row), not {type(rows).__name__}"
    )


class TrainingStudioModel(mlflow.pyfunc.PythonModel):
    """A bundle whose ``studio_model.json`` names a ``predictor`` (``{"module", "class"}``): that class
    of the shipped code file ``<module>_runtime`` loads it (``from_files(info, weights, modules,
    files)``) and predicts raw rows (a text model: the table's columns, text among them).
    A tabular model: raw table rows in. Extra columns are ignored, absent ones count as missing,
    unseen categories as unknown. An image model: a DataFrame with an ``image`` column of picture paths
    or bytes in (or a list of them). Out: ``predicted_<target>`` plus one ``probability_<class>`` per class;
    a tabular model adds ``prediction_warning``: empty, or why that row's prediction is a guess (its inputs
    are empty or far outside the training range).
    """

    def load_context(self, context: Any) -> None:
        self.info = json.loads(Path(context.artifacts["studio_model"]).read_text(encoding="utf-8"))
        kind = self.info.get("kind")
        runtime = _import_runtime(context.artifacts["runtime"])
        self.runtime = runtime
        predictor = self.info.get("predictor")
        if predictor:  # a kind that names its predictor: a class in one of the shipped code files
            modules = {"runtime": runtime}
            for key, path in context.artifacts.items():
                if key.endswith("_runtime"):
                    modules[key[: -len("_runtime")]] = _import_runtime(path)
            self.predictor = getattr(modules[predictor["module"]], predictor["class"]).from_files(
                self.info, context.artifacts["weights"], modules, context.artifacts.get("files")
            )
        elif kind == "tabular":
            self.predictor = runtime.TabularPredictor.from_files(self.info, context.artifacts["weights"])
        elif kind == "image":
            image_io = _import_runtime(context.artifacts["image_io"])
            self.predictor = runtime.ImagePredictor.from_files(
                self.info, context.artifacts["weights"], image_io
            )
        else:
            raise ValueError(f"this entry cannot predict '{kind}' models: the bundle names no predictor")

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.info["kind"] == "image":
            return self.predictor.predict(self.runtime.as_image_frame(model_input))
        return self.predictor.predict(as_frame(model_input))


mlflow.models.set_model(TrainingStudioModel())
