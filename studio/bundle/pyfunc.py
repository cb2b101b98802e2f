"""The MLflow "models from code" entry of a Training Studio model bundle.

The bundle ships this file as ``training_studio_pyfunc.py`` beside its ``MLmodel``; MLflow runs it when
the model is saved and again when ``mlflow.pyfunc.load_model`` opens the bundle. It must never import
``studio``: a bundle predicts where the studio is not installed. Everything it needs travels as MLflow
artifacts: ``studio_model.json`` (preprocessing, target and network state as plain JSON), ``weights.pt``
(a state dict read with ``weights_only=True``) and ``training_studio_runtime.py`` (a copy of
``studio/core/runtime.py``, and the kind's own ``training_studio_<name>.py`` files), imported from their files under names of their own so that two bundles
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


class TrainingStudioModel(mlflow.pyfunc.PythonModel):
    """Any kind of studio model. ``studio_model.json`` names its predictor (``{"module", "class"}``): a
    class of one of the shipped code files (artifacts ``runtime`` and the kind's own, each imported from its
    file under a name of its own). ``Class.load(info, weights, modules, files)`` opens the
    model; ``predict_input`` takes what the caller passes (raw table rows, or what the kind reads) and
    returns ``predicted_<target>``, one ``probability_<class>`` per class, and for rows a
    ``prediction_warning`` (empty, or why that row's prediction is a guess)."""

    def load_context(self, context: Any) -> None:
        self.info = json.loads(Path(context.artifacts["studio_model"]).read_text(encoding="utf-8"))
        named = self.info.get("predictor")
        if not named:
            raise ValueError(
                f"this bundle's {Path(context.artifacts['studio_model']).name} names no predictor"
            )
        modules = {
            key: _import_runtime(path) for key, path in context.artifacts.items() if str(path).endswith(".py")
        }
        self.predictor = getattr(modules[named["module"]], named["class"]).load(
            self.info, context.artifacts["weights"], modules, context.artifacts.get("files")
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.predictor.predict_input(model_input)


mlflow.models.set_model(TrainingStudioModel())
