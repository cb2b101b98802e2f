"""Writing a bundle: refuses non-finite weights, copies the shipped runtime files, saves the MLflow
model with explicit pip requirements, adds the ONNX export and a README, zips it."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import BundleError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from studio.core.spec import RunSpec

from studio.bundle.layout import (
    _CORE,
    _HERE,
    CODE_PREFIX,
    ENTRY_FILE,
    FILES_DIR,
    FORMAT,
    FORMAT_VERSION,
    IMAGE_IO_FILE,
    INFO_FILE,
    KIND_IMAGE,
    KIND_TABULAR,
    ONNX_FILE,
    RUNTIME_FILE,
    WEIGHTS_FILE,
    _quiet_mlflow,
    python_snippet,
)
from studio.bundle.onnx import _try_export_image_onnx, _try_export_onnx

_log = logging.getLogger(__name__)


def write_tabular_bundle(
    path: Path,
    *,
    spec: RunSpec,
    preprocessing: dict,
    target: dict,
    network_config: dict,
    state_dict: dict[str, torch.Tensor],
    sample_rows: pd.DataFrame,
    metrics: dict[str, float],
) -> Path:
    """Write a tabular model bundle (see the module docstring) at ``path`` and return ``path``.

    A failed ONNX export is logged and recorded in ``studio_model.json``; the bundle is written without it.
    """
    from studio.core.runtime import TabularPreprocessor, build_tabular_net

    check_finite_weights(state_dict)
    preprocessor = TabularPreprocessor(preprocessing)
    input_columns = [
        {"name": column["name"], "kind": group}
        for group in ("numeric", "datetime", "categorical")
        for column in preprocessing[group]
    ]
    net = build_tabular_net(network_config)
    net.load_state_dict(state_dict)
    net.eval()

    def onnx(staging: Path) -> dict[str, Any]:
        n_numeric, n_categorical = preprocessor.n_numeric, len(preprocessor.cardinalities)
        return {"onnx": _try_export_onnx(net, staging / ONNX_FILE, n_numeric, n_categorical, target)}

    info = {
        "kind": KIND_TABULAR,
        "predictor": {"module": "runtime", "class": "TabularPredictor"},
        "task": target["task"],
        "target": target,
        "input_columns": input_columns,
        "preprocessing": preprocessing,
        "network": network_config,
        **_ensemble_info(network_config),
        "metrics": _finite_metrics(metrics),
        "spec": spec.model_dump(mode="json"),
        "example_rows": _example_rows(sample_rows, [c["name"] for c in input_columns]),
    }
    return write_kind_bundle(path, info, state_dict, extra=onnx)


def _ensemble_info(network_config: dict[str, Any]) -> dict[str, Any]:
    """``{"ensemble": {...}}`` for fold models averaged into one (``network.members``), else nothing."""
    if "members" not in network_config:
        return {}
    members, combine = network_config["members"], network_config["combine"]
    what = "class probabilities" if combine == "probabilities" else "predicted values"
    return {
        "ensemble": {
            "members": members,
            "combine": combine,
            "text": (
                f"An ensemble of {members} fold models sharing one preprocessing: each prediction runs "
                f"all {members} and averages their {what}. Their weights are members.<n>.* in "
                f"{WEIGHTS_FILE}."
            ),
        }
    }


def _stage(staging: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """The weights and the shipped code every bundle holds (the table runtime, the pyfunc entry)."""
    import torch

    staging.mkdir()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, staging / WEIGHTS_FILE)
    shutil.copyfile(_CORE / "runtime.py", staging / RUNTIME_FILE)
    shutil.copyfile(_HERE / "pyfunc.py", staging / ENTRY_FILE)


def check_finite_weights(state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse weights that hold NaN or infinite values: such a model predicts only blanks."""
    import torch

    bad = [
        name
        for name, tensor in state_dict.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise BundleError(
            f"The model's weights hold NaN or infinite values ({_plural(len(bad), 'tensor')}, e.g. "
            f"'{bad[0]}'), so no model file was written: the training diverged. Train again with a "
            "lower learning rate."
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _finite_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics for JSON: NaN and infinite values become ``null`` (JSON has no such numbers)."""
    return {key: (float(value) if math.isfinite(float(value)) else None) for key, value in metrics.items()}


def _save_and_zip(
    path: Path, info: dict[str, Any], staging: Path, model_dir: Path, requirements: list[str]
) -> None:
    """Write ``studio_model.json``, save the MLflow model from the staged files and zip it at ``path``
    (through a ``.partial`` file, so a failure leaves no half-written zip)."""
    import mlflow

    try:
        text = json.dumps(info, indent=2, allow_nan=False)
    except ValueError:  # a NaN or infinite number in the preprocessing or target state
        raise BundleError(
            "The model's settings hold a NaN or infinite number (the data has values too large to "
            "compute with), so no model file was written; check the data set's warnings."
        ) from None
    (staging / INFO_FILE).write_text(text, encoding="utf-8")
    artifacts = {
        name: str(staging / file)
        for name, file in (
            ("studio_model", INFO_FILE),
            ("weights", WEIGHTS_FILE),
            ("files", FILES_DIR),
            ("onnx", ONNX_FILE),
        )
        if (staging / file).exists()
    }
    # the shipped code files: training_studio_runtime.py is the artifact "runtime", and so on
    for code in sorted(staging.glob(f"{CODE_PREFIX}*.py")):
        if code.name != ENTRY_FILE:
            artifacts[code.stem[len(CODE_PREFIX) :]] = str(code)
    with _quiet_mlflow():
        mlflow.pyfunc.save_model(
            str(model_dir),
            python_model=str(staging / ENTRY_FILE),
            artifacts=artifacts,
            pip_requirements=requirements,
        )
    (model_dir / "README.md").write_text(_readme(info, path.name), encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(model_dir.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(model_dir).as_posix())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_image_bundle(
    path: Path,
    *,
    spec: RunSpec,
    classes: list[str],
    preprocessing: dict[str, Any],
    network_config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, float],
) -> Path:
    """Write an image model bundle at ``path`` and return ``path``.

    ``preprocessing`` is the DataModule's (``size``, ``mean``, ``std`` …); ``network_config`` is what
    ``bundle_runtime.build_image_net`` rebuilds the network from. A failed ONNX export is recorded in
    ``studio_model.json``; the bundle is written without it.
    """
    import torchvision

    from studio.core.image_io import IMAGE_IO_VERSION
    from studio.core.pretrained import pretrainable, weights_source
    from studio.core.runtime import build_image_net

    check_finite_weights(state_dict)
    net = build_image_net(network_config)
    net.load_state_dict(state_dict)
    net.eval()

    def reader_and_onnx(staging: Path) -> dict[str, Any]:
        shutil.copyfile(_CORE / "image_io.py", staging / IMAGE_IO_FILE)
        return {
            "onnx": _try_export_image_onnx(net, staging / ONNX_FILE, int(preprocessing["size"]), len(classes))
        }

    info: dict[str, Any] = {
        "kind": KIND_IMAGE,
        "predictor": {"module": "runtime", "class": "ImagePredictor"},
        "task": spec.task,
        "target": {"name": spec.data.target, "task": spec.task, "classes": list(classes)},
        "input_columns": [{"name": "image", "kind": "image"}],
        "preprocessing": preprocessing,
        "network": network_config,
        "metrics": _finite_metrics(metrics),
        "spec": spec.model_dump(mode="json"),
        "image_io_version": IMAGE_IO_VERSION,
    }
    if spec.architecture.params.get("pretrained") and pretrainable(spec.architecture.name):
        # the weights training started from (the bundle's own weights.pt holds the whole trained network)
        info["pretrained_from"] = weights_source(spec.architecture.name)
    torchvision_version = _public_version(torchvision.__version__)
    return write_kind_bundle(
        path,
        info,
        state_dict,
        requirements=[f"torchvision=={torchvision_version}", "pillow>=10"],
        extra=reader_and_onnx,
        library_versions={"torchvision": torchvision_version},
    )


def write_kind_bundle(
    path: Path,
    info: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    code: dict[str, str] | None = None,
    requirements: list[str] | None = None,
    extra: Callable[[Path], dict[str, Any]] | None = None,
    library_versions: dict[str, str] | None = None,
) -> Path:
    """Write a bundle at ``path`` (every kind's writer ends here): ``info`` is its ``studio_model.json``
    (``kind``, ``predictor`` naming a class of one of its code files, ``task``, ``target``,
    ``input_columns`` …; the format fields and versions are added), ``state_dict`` the network's weights,
    ``code`` its shipped code files (artifact name -> source text, e.g. ``{"toy_runtime": "..."}``; the
    table runtime always travels as ``runtime``), ``requirements`` its pip requirements beside mlflow,
    torch, pandas and numpy. ``extra(staging)`` writes the kind's own files into the staging folder (code
    files, ``files/``, the ONNX export) and returns what it adds to ``info`` (e.g. ``{"onnx": ...}``).
    A kind that lives outside the studio (``STUDIO_MODALITIES``) writes its bundles with it, and the
    studio's pages and CLI read them as any other."""
    import mlflow
    import torch

    import studio
    from studio.core.runtime import RUNTIME_VERSION

    path = Path(path)
    check_finite_weights(state_dict)
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        staging, model_dir = Path(tmp) / "files", Path(tmp) / "model"
        _stage(staging, state_dict)
        for name, text in (code or {}).items():
            (staging / f"{CODE_PREFIX}{name}.py").write_text(text, encoding="utf-8")
        added = extra(staging) if extra is not None else {}
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "weights": WEIGHTS_FILE,
            "onnx": {"file": None, "error": "this kind writes no ONNX file"},
            "example_rows": [],
            **info,
            **added,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "studio_version": studio.__version__,
            "runtime_version": RUNTIME_VERSION,
            "library_versions": {
                "mlflow": mlflow.__version__,
                "torch": _public_version(torch.__version__),
                **(library_versions or {}),
            },
        }
        _save_and_zip(path, full, staging, model_dir, _pip_requirements() + list(requirements or []))
    return path


def _pip_requirements() -> list[str]:
    """The versions that wrote the bundle for mlflow and torch; for pandas and numpy, the ranges the
    runtime supports (pinning them would clash with most environments for no gain)."""
    import mlflow
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={_public_version(torch.__version__)}",
        "pandas>=2.2,<4",
        "numpy>=1.26,<3",
    ]


def _public_version(version: str) -> str:
    """``2.4.1+cu121`` -> ``2.4.1``: a local build label is not installable from an index."""
    return version.split("+", 1)[0]


def _example_rows(sample_rows: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    wanted = set(columns)
    kept = [c for c in sample_rows.columns if c in wanted]
    text = sample_rows[kept].head(5).to_json(orient="records", date_format="iso", default_handler=str)
    return json.loads(text)


def _readme(info: dict[str, Any], bundle_name: str) -> str:
    target = info["target"]["name"]
    onnx_line = (
        f"- `{info['onnx']['file']}`: the network alone (ONNX, dynamic batch axis); its inputs are described "
        "under `onnx` in `artifacts/studio_model.json`."
        if info["onnx"]["file"]
        else f"- No ONNX file: the export failed ({info['onnx']['error']})."
    )
    if info["kind"] == KIND_IMAGE:
        return (
            f"# Training Studio model: image classification ({', '.join(info['target']['classes'])})\n\n"
            "An MLflow pyfunc model. It needs only mlflow, torch, torchvision, pillow and pandas (not the studio):\n\n"
            f"```python\n{python_snippet(bundle_name, kind=KIND_IMAGE)}```\n\n"
            f"`predict` takes a DataFrame with an `image` column (picture file paths or bytes) and returns "
            f"`predicted_{target}` and one `probability_<class>` column per class.\n\n"
            "- `MLmodel`, `python_env.yaml`, `requirements.txt`: MLflow's description of the model.\n"
            f"- `{ENTRY_FILE}`: the code MLflow runs to load and call the model.\n"
            f"- `artifacts/{INFO_FILE}`: classes, picture preparation (size, mean, std), network, metrics and "
            "the run spec.\n"
            f"- `artifacts/{WEIGHTS_FILE}`: the weights (`torch.load(..., weights_only=True)`).\n"
            f"- `artifacts/{RUNTIME_FILE}`: the network code; `artifacts/{IMAGE_IO_FILE}`: how pictures are read.\n"
            f"{onnx_line}\n"
        )
    return (
        f"# Training Studio model: {info['task']} of `{target}`\n\n"
        "An MLflow pyfunc model. It needs only mlflow, torch and pandas (not the studio):\n\n"
        f"```python\n{python_snippet(bundle_name)}```\n\n"
        f"`predict` takes the raw columns of the training CSV and returns `predicted_{target}`"
        + (" and one `probability_<class>` column per class" if info["task"] == "classification" else "")
        + ", then `prediction_warning`: empty when the row looks like the training data, else why its "
        "prediction is a guess (every input empty, or a number far outside the values seen in training).\n\n"
        + (
            f"`{target}` looks like money or a count: the network learned it on a log scale (log(1 + value)), "
            "and `predict` gives it back in its own units.\n\n"
            if info["target"].get("log_scale")
            else ""
        )
        + "- `MLmodel`, `python_env.yaml`, `requirements.txt`: MLflow's description of the model.\n"
        f"- `{ENTRY_FILE}`: the code MLflow runs to load and call the model.\n"
        f"- `artifacts/{INFO_FILE}`: preprocessing, target, network, input columns, metrics and the run spec.\n"
        f"- `artifacts/{WEIGHTS_FILE}`: the weights (`torch.load(..., weights_only=True)`).\n"
        f"- `artifacts/{RUNTIME_FILE}`: the preprocessing and network code.\n"
        f"{onnx_line}\n" + (f"\n{info['ensemble']['text']}\n" if "ensemble" in info else "")
    )
