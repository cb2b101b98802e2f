"""The model bundle: one zip that predicts without the studio (write, read, load, predict).

Two kinds share one layout: ``tabular`` (raw table rows in) and ``image`` (picture paths or bytes in).
Layout (the zip's root is an MLflow model folder, so ``mlflow.pyfunc.load_model`` opens it unzipped)::

    MLmodel, python_env.yaml, requirements.txt, conda.yaml   MLflow (explicit pip requirements)
    training_studio_pyfunc.py        the "models from code" entry (a copy of studio/bundle_pyfunc.py)
    artifacts/studio_model.json      kind, format version, task, preprocessing/target/network state,
                                     input columns, metrics, spec, example rows, ONNX description
    artifacts/weights.pt             the network's state dict (read with ``weights_only=True``)
    artifacts/training_studio_runtime.py   a copy of studio/bundle_runtime.py
    artifacts/training_studio_image_io.py  (image bundles) a copy of studio/image_io.py: reads pictures
    artifacts/model.onnx             the network alone, dynamic batch axis (absent if export failed)
    README.md                        what the files are and how to use them

An image bundle's ``studio_model.json`` holds the classes (``target.classes``) and the preprocessing
(``size``, resize rule, ``mean``/``std``); its ONNX input is the normalised ``float [batch, 3, size, size]``.

Nothing in the bundle is a pickle and nothing imports ``studio``. Importing this module is cheap
(``python_snippet`` is used by the pages); torch and mlflow are imported by the functions that need them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
import weakref
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import BundleError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from studio.spec import RunSpec

FORMAT = "training-studio-bundle"
FORMAT_VERSION = 1
KIND_TABULAR = "tabular"
KIND_IMAGE = "image"
KINDS = (KIND_TABULAR, KIND_IMAGE)

ENTRY_FILE = "training_studio_pyfunc.py"
RUNTIME_FILE = "training_studio_runtime.py"
IMAGE_IO_FILE = "training_studio_image_io.py"
INFO_FILE = "studio_model.json"
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
INFO_MEMBER = f"artifacts/{INFO_FILE}"
MAX_UNPACKED_BYTES = 8 * 2**30

_log = logging.getLogger(__name__)
_HERE = Path(__file__).resolve().parent


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


# --------------------------------------------------------------------------- writing
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
    import mlflow
    import torch

    import studio
    from studio.bundle_runtime import RUNTIME_VERSION, TabularPreprocessor, build_tabular_net

    path = Path(path)
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
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        staging, model_dir = Path(tmp) / "files", Path(tmp) / "model"
        staging.mkdir()
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, staging / WEIGHTS_FILE)
        shutil.copyfile(_HERE / "bundle_runtime.py", staging / RUNTIME_FILE)
        shutil.copyfile(_HERE / "bundle_pyfunc.py", staging / ENTRY_FILE)
        onnx_info = _try_export_onnx(
            net, staging / ONNX_FILE, preprocessor.n_numeric, len(preprocessor.cardinalities), target["task"]
        )
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": KIND_TABULAR,
            "task": target["task"],
            "target": target,
            "input_columns": input_columns,
            "preprocessing": preprocessing,
            "network": network_config,
            "weights": WEIGHTS_FILE,
            "onnx": onnx_info,
            "metrics": _finite_metrics(metrics),
            "spec": spec.model_dump(mode="json"),
            "example_rows": _example_rows(sample_rows, [c["name"] for c in input_columns]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "studio_version": studio.__version__,
            "runtime_version": RUNTIME_VERSION,
            "library_versions": {"mlflow": mlflow.__version__, "torch": _public_version(torch.__version__)},
        }
        _save_and_zip(path, info, staging, model_dir, _pip_requirements())
    return path


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
            ("runtime", RUNTIME_FILE),
            ("image_io", IMAGE_IO_FILE),
            ("onnx", ONNX_FILE),
        )
        if (staging / file).exists()
    }
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
    import mlflow
    import torch
    import torchvision

    import studio
    from studio.bundle_runtime import RUNTIME_VERSION, build_image_net
    from studio.image_io import IMAGE_IO_VERSION

    path = Path(path)
    check_finite_weights(state_dict)
    net = build_image_net(network_config)
    net.load_state_dict(state_dict)
    net.eval()
    target = {"name": spec.data.target, "task": spec.task, "classes": list(classes)}
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        staging, model_dir = Path(tmp) / "files", Path(tmp) / "model"
        staging.mkdir()
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, staging / WEIGHTS_FILE)
        shutil.copyfile(_HERE / "bundle_runtime.py", staging / RUNTIME_FILE)
        shutil.copyfile(_HERE / "image_io.py", staging / IMAGE_IO_FILE)
        shutil.copyfile(_HERE / "bundle_pyfunc.py", staging / ENTRY_FILE)
        onnx_info = _try_export_image_onnx(net, staging / ONNX_FILE, int(preprocessing["size"]), len(classes))
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": KIND_IMAGE,
            "task": spec.task,
            "target": target,
            "input_columns": [{"name": "image", "kind": "image"}],
            "preprocessing": preprocessing,
            "network": network_config,
            "weights": WEIGHTS_FILE,
            "onnx": onnx_info,
            "metrics": _finite_metrics(metrics),
            "spec": spec.model_dump(mode="json"),
            "example_rows": [],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "studio_version": studio.__version__,
            "runtime_version": RUNTIME_VERSION,
            "image_io_version": IMAGE_IO_VERSION,
            "library_versions": {
                "mlflow": mlflow.__version__,
                "torch": _public_version(torch.__version__),
                "torchvision": _public_version(torchvision.__version__),
            },
        }
        requirements = _pip_requirements() + [
            f"torchvision=={_public_version(torchvision.__version__)}",
            "pillow>=10",
        ]
        _save_and_zip(path, info, staging, model_dir, requirements)
    return path


def _try_export_image_onnx(net: torch.nn.Module, path: Path, size: int, n_classes: int) -> dict[str, Any]:
    """Export an image network to ONNX (input ``image``: normalised ``float [batch, 3, size, size]``)."""
    try:
        exporter = _export_image_onnx(net, path, size)
        inputs = _onnx_inputs(path)
    except Exception as err:  # any exporter failure: the pyfunc model does not need ONNX
        _log.warning("ONNX export failed, the bundle is written without model.onnx: %s", err)
        path.unlink(missing_ok=True)
        return {
            "file": None,
            "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}",
        }
    return {
        "file": f"artifacts/{ONNX_FILE}",
        "exporter": exporter,
        "inputs": inputs,
        "output": {"name": "output", "dtype": "float32", "shape": ["batch", n_classes]},
        "note": (
            "Input: pictures prepared as in training_studio_image_io.load_square (RGB, shorter side resized "
            "to preprocessing.size, centre crop), as float32 NCHW divided by 255, minus preprocessing.mean, "
            "divided by preprocessing.std per channel. Output: one logit per class in the order of "
            "target.classes; softmax gives probabilities."
        ),
    }


def _export_image_onnx(net: torch.nn.Module, path: Path, size: int, exporter: str = "auto") -> str:
    """Export with a dynamic batch axis (TorchScript exporter first: faster; torch.export as fallback)."""
    import torch

    example = torch.zeros(2, 3, size, size, dtype=torch.float32)
    names = {"input_names": ["image"], "output_names": ["output"]}
    errors = []
    for name in ("torchscript", "dynamo") if exporter == "auto" else (exporter,):
        try:
            with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "onnxscript"):
                warnings.simplefilter("ignore")
                if name == "torchscript":
                    axes = {"image": {0: "batch"}, "output": {0: "batch"}}
                    torch.onnx.export(net, (example,), str(path), dynamo=False, dynamic_axes=axes, **names)
                else:
                    batch = torch.export.Dim("batch")
                    torch.onnx.export(
                        net,
                        (example,),
                        str(path),
                        dynamo=True,
                        dynamic_shapes=({0: batch},),
                        verbose=False,
                        **names,
                    )
            return name
        except Exception as err:  # try the next exporter, report all if none works
            errors.append(f"{name}: {err}")
    raise RuntimeError("; ".join(errors))


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


def _try_export_onnx(
    net: torch.nn.Module, path: Path, n_numeric: int, n_categorical: int, task: str
) -> dict[str, Any]:
    """Export the network to ONNX; on failure the bundle goes without it and says why."""
    try:
        exporter = _export_onnx(net, path, n_numeric, n_categorical)
        inputs = _onnx_inputs(path)
    except Exception as err:  # any exporter failure: the pyfunc model does not need ONNX
        _log.warning("ONNX export failed, the bundle is written without model.onnx: %s", err)
        path.unlink(missing_ok=True)
        return {
            "file": None,
            "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}",
        }
    n_out = net.config["n_out"]
    return {
        "file": f"artifacts/{ONNX_FILE}",
        "exporter": exporter,
        "inputs": inputs,
        "output": {"name": "output", "dtype": "float32", "shape": ["batch", n_out]},
        "note": (
            "Inputs come from TabularPreprocessor(preprocessing).transform(rows) in training_studio_runtime.py. "
            + (
                "The output holds one logit per class in the order of target.classes; softmax gives probabilities."
                if task == "classification"
                else "The output is the scaled target: multiply by target.std and add target.mean."
            )
        ),
    }


def _export_onnx(
    net: torch.nn.Module, path: Path, n_numeric: int, n_categorical: int, exporter: str = "auto"
) -> str:
    """Export with a dynamic batch axis; returns which exporter wrote the file.

    The TorchScript exporter writes this small network in ~0.1 s where the torch.export-based one needs
    ~2.5 s on a cold process, so it goes first; torch.export is the fallback (and the path once the
    TorchScript exporter is gone). The TorchScript exporter drops an input of width 0, so the inputs are
    read back from the file and listed in ``studio_model.json``.
    """
    import torch

    numeric = torch.zeros(2, n_numeric, dtype=torch.float32)
    categorical = torch.zeros(2, n_categorical, dtype=torch.int64)
    names = {"input_names": ["numeric", "categorical"], "output_names": ["output"]}
    errors = []
    for name in ("torchscript", "dynamo") if exporter == "auto" else (exporter,):
        try:
            with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "onnxscript"):
                warnings.simplefilter("ignore")
                if name == "torchscript":
                    axes = {"numeric": {0: "batch"}, "categorical": {0: "batch"}, "output": {0: "batch"}}
                    torch.onnx.export(
                        net, (numeric, categorical), str(path), dynamo=False, dynamic_axes=axes, **names
                    )
                else:
                    batch = torch.export.Dim("batch")
                    torch.onnx.export(
                        net,
                        (numeric, categorical),
                        str(path),
                        dynamo=True,
                        dynamic_shapes=({0: batch}, {0: batch}),
                        verbose=False,
                        **names,
                    )
            return name
        except Exception as err:  # try the next exporter, report all if none works
            errors.append(f"{name}: {err}")
    raise RuntimeError("; ".join(errors))


def _onnx_inputs(path: Path) -> list[dict[str, Any]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
    inputs = []
    for value in model.graph.input:
        tensor = value.type.tensor_type
        shape = ["batch" if d.dim_param else d.dim_value for d in tensor.shape.dim]
        inputs.append(
            {"name": value.name, "dtype": dtypes.get(tensor.elem_type, str(tensor.elem_type)), "shape": shape}
        )
    return inputs


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
        "- `MLmodel`, `python_env.yaml`, `requirements.txt`: MLflow's description of the model.\n"
        f"- `{ENTRY_FILE}`: the code MLflow runs to load and call the model.\n"
        f"- `artifacts/{INFO_FILE}`: preprocessing, target, network, input columns, metrics and the run spec.\n"
        f"- `artifacts/{WEIGHTS_FILE}`: the weights (`torch.load(..., weights_only=True)`).\n"
        f"- `artifacts/{RUNTIME_FILE}`: the preprocessing and network code.\n"
        f"{onnx_line}\n"
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


# --------------------------------------------------------------------------- reading
def _open_zip(path_zip: str | Path) -> tuple[zipfile.ZipFile, str]:
    """The bundle's zip and the folder prefix of its model (``""``, or one folder if it was re-zipped)."""
    path = Path(path_zip).expanduser()
    if not path.is_file():
        raise BundleError(f"There is no model bundle at '{path}' (no such file).")
    if not zipfile.is_zipfile(path):
        raise BundleError(
            f"'{path.name}' is not a zip file; a model bundle is the .zip the studio's Runs page downloads."
        )
    try:
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise BundleError(f"'{path.name}' is a damaged zip file ({err}).") from None
    prefixes = [n[: -len(INFO_MEMBER)] for n in names if n.endswith(INFO_MEMBER)]
    prefixes = [p for p in prefixes if p.count("/") <= 1 and f"{p}MLmodel" in names]
    if not prefixes:
        zf.close()
        raise BundleError(
            f"'{path.name}' is a zip file but not a Training Studio model bundle (it has no MLmodel and {INFO_MEMBER})."
        )
    return zf, min(prefixes, key=len)


def _check_info(info: Any, name: str) -> dict[str, Any]:
    if (
        not isinstance(info, dict)
        or info.get("format") != FORMAT
        or not isinstance(info.get("format_version"), int)
    ):
        raise BundleError(
            f"'{name}' is not a Training Studio model bundle (its {INFO_FILE} is not one of ours)."
        )
    if info["format_version"] > FORMAT_VERSION:
        raise BundleError(
            f"'{name}' was written by a newer Training Studio (bundle format {info['format_version']}; this version "
            f"reads format {FORMAT_VERSION} and older): update the studio to use it."
        )
    if info.get("kind") not in KINDS:
        raise BundleError(
            f"'{name}' holds a '{info.get('kind')}' model, which this version of the studio cannot load "
            f"(it loads: {', '.join(KINDS)})."
        )
    if info["kind"] == KIND_IMAGE:
        preprocessing = info.get("preprocessing")
        if not isinstance(preprocessing, dict) or not {"size", "mean", "std"} <= set(preprocessing):
            raise BundleError(
                f"'{name}' holds an 'image' model without its picture preparation (size, mean, std) in "
                f"{INFO_FILE}; it is damaged: download it again."
            )
    return info


def _read_info(zf: zipfile.ZipFile, prefix: str, name: str) -> dict[str, Any]:
    try:
        info = json.loads(zf.read(prefix + INFO_MEMBER).decode("utf-8"))
    except (ValueError, zipfile.BadZipFile, OSError) as err:
        raise BundleError(f"'{name}' is damaged: its {INFO_FILE} cannot be read ({err}).") from None
    return _check_info(info, name)


def read_bundle_info(path_zip: str | Path) -> dict[str, Any]:
    """The bundle's ``studio_model.json`` read straight from the zip (no mlflow, no torch)."""
    zf, prefix = _open_zip(path_zip)
    with zf:
        return _read_info(zf, prefix, Path(path_zip).name)


def _require_shared_column(expected: list[str], columns: Any) -> None:
    if expected and not set(map(str, columns)) & set(expected):
        raise BundleError(
            "None of the data's columns is an input of this model (names must match exactly); "
            f"it expects: {', '.join(expected)}."
        )


class LoadedBundle:
    """A bundle unpacked into a temporary folder and opened with ``mlflow.pyfunc.load_model``.

    The folder is removed by :meth:`close` (or when the object is garbage collected).
    """

    def __init__(self, source: Path, folder: Path, info: dict[str, Any], model: Any):
        self.source = source
        self.folder = folder
        self.info = info
        self.model = model
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder.parent, True)

    @property
    def kind(self) -> str:
        return self.info["kind"]

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def target_name(self) -> str:
        return self.info["target"]["name"]

    @property
    def classes(self) -> list[str] | None:
        return self.info["target"].get("classes")

    @property
    def input_columns(self) -> list[str]:
        return [column["name"] for column in self.info["input_columns"]]

    @property
    def prediction_columns(self) -> list[str]:
        return [f"predicted_{self.target_name}"] + [f"probability_{c}" for c in self.classes or []]

    @property
    def onnx_path(self) -> Path | None:
        file = self.info["onnx"].get("file")
        return self.folder / file if file else None

    def predict(self, rows: pd.DataFrame | list[dict[str, Any]] | dict[str, Any]) -> pd.DataFrame:
        """Predictions for raw rows: a DataFrame (index kept), records, or one row as a dict.
        Rows sharing no column with the model are refused. An image model takes a DataFrame with an
        ``image`` column, or picture paths or bytes (one, or a list); an unreadable picture is a
        :class:`BundleError` naming it (:meth:`predict_images` reports it per picture instead)."""
        import pandas as pd

        if self.kind == KIND_IMAGE:
            from studio.bundle_runtime import as_image_frame

            try:
                return self.model.predict(as_image_frame(rows))
            except (ValueError, TypeError) as err:
                raise BundleError(str(err).strip().splitlines()[0]) from None
        if isinstance(rows, dict):
            rows = [rows]
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        _require_shared_column(self.input_columns, frame.columns)
        return self.model.predict(frame)

    def predict_images(self, pictures: list[Any], names: list[str] | None = None) -> pd.DataFrame:
        """One row per picture (paths or bytes): ``image`` (its name), the prediction columns, and
        ``error`` (why a picture could not be read; its predictions are then empty). For the Predict page."""
        import pandas as pd

        from studio.bundle_runtime import image_source
        from studio.image_io import open_image

        if self.kind != KIND_IMAGE:
            raise BundleError("This model predicts from table columns, not from pictures.")
        names = names or [p if isinstance(p, str) else f"picture {i + 1}" for i, p in enumerate(pictures)]
        errors: list[str | None] = []
        for picture in pictures:
            try:
                open_image(image_source(picture), draft_size=64).close()
                errors.append(None)
            except (ValueError, TypeError) as err:
                errors.append(str(err))
        good = [i for i, e in enumerate(errors) if e is None]
        frame = pd.DataFrame({"image": names}).reindex(columns=["image", *self.prediction_columns, "error"])
        frame["error"] = errors
        if good:
            predicted = self.model.predict(pd.DataFrame({"image": [pictures[i] for i in good]}))
            for column in self.prediction_columns:
                frame[column] = frame[column].astype(
                    predicted[column].dtype if column in predicted else object
                )
                frame.loc[good, column] = predicted[column].to_numpy()
        return frame

    def close(self) -> None:
        self._cleanup()

    def __enter__(self) -> LoadedBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_bundle(path_zip: str | Path) -> LoadedBundle:
    """Unpack a bundle into a temporary folder and open it with ``mlflow.pyfunc.load_model``."""
    source = Path(path_zip).expanduser().resolve()
    zf, prefix = _open_zip(source)
    root = Path(tempfile.mkdtemp(prefix="studio-bundle-"))
    folder = root / "model"
    try:
        with zf:
            info = _read_info(zf, prefix, source.name)
            _safe_extract(zf, prefix, folder, source.name)
        import mlflow

        with _quiet_mlflow():
            model = mlflow.pyfunc.load_model(str(folder))
    except BundleError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    except Exception as err:
        shutil.rmtree(root, ignore_errors=True)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"The model bundle '{source.name}' could not be loaded: {first}") from err
    return LoadedBundle(source, folder, info, model)


def _safe_extract(zf: zipfile.ZipFile, prefix: str, folder: Path, name: str) -> None:
    members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        raise BundleError(
            f"'{name}' unpacks to more than {MAX_UNPACKED_BYTES // 2**30} GiB; it is not a studio bundle."
        )
    base = folder.resolve()
    for member in members:
        relative = member.filename[len(prefix) :]
        target = (base / relative).resolve()
        if relative.startswith("/") or ".." in Path(relative).parts or not target.is_relative_to(base):
            raise BundleError(f"'{name}' contains an unsafe path ({member.filename}); it was not unpacked.")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)


# --------------------------------------------------------------------------- the predict command
def predict_csv(
    bundle_zip: str | Path, data_csv: str | Path, out_csv: str | Path | None = None
) -> pd.DataFrame:
    """The data file's columns plus ``predicted_<target>`` (and ``probability_<class>`` per class).

    Written to ``out_csv`` when given. The bundle is checked before the data is read. For an image
    model ``data_csv`` may also be a picture, a zip of pictures or a folder of them; a CSV then needs
    an ``image`` column of picture paths (relative to the CSV's folder or absolute).
    """
    from studio.datasets import read_table_file

    info = read_bundle_info(bundle_zip)
    if info["kind"] == KIND_IMAGE:
        return _predict_pictures(bundle_zip, Path(data_csv).expanduser(), out_csv)
    frame = read_table_file(data_csv)
    _require_shared_column([c["name"] for c in info["input_columns"]], frame.columns)
    with load_bundle(bundle_zip) as bundle:
        predictions = bundle.predict(frame)
    return _joined(frame, predictions, out_csv)


def _joined(frame: pd.DataFrame, predictions: pd.DataFrame, out_csv: str | Path | None) -> pd.DataFrame:
    result = frame.drop(columns=[c for c in predictions.columns if c in frame.columns]).join(predictions)
    if out_csv is not None:
        out = Path(out_csv).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(out, index=False)
    return result


def _predict_pictures(bundle_zip: str | Path, data: Path, out_csv: str | Path | None) -> pd.DataFrame:
    import pandas as pd

    from studio.bundle_runtime import image_column

    if not data.exists():
        raise BundleError(f"There is nothing at '{data}' to predict (no such file or folder).")
    names: list[str]
    pictures: list[Any]
    if data.is_dir():
        from studio.datasets.images import named_like_picture

        files = sorted(
            p for p in data.rglob("*") if p.is_file() and named_like_picture(str(p.relative_to(data)))
        )
        names, pictures = [str(p.relative_to(data)) for p in files], [str(p) for p in files]
    elif zipfile.is_zipfile(data):
        names, pictures = _pictures_in_zip(data)
    elif data.suffix.lower() in (".csv", ".tsv", ".txt"):
        from studio.datasets import read_table_file

        frame = read_table_file(data)
        try:
            column = image_column(frame)
        except ValueError as err:
            raise BundleError(str(err)) from None
        names = [str(v) for v in frame[column]]
        pictures = [str(v if Path(str(v)).is_absolute() else data.parent / str(v)) for v in frame[column]]
    else:
        names, pictures = [data.name], [str(data)]
    if not pictures:
        raise BundleError(f"'{data.name}' holds no pictures to predict.")
    with load_bundle(bundle_zip) as bundle:
        result = bundle.predict_images(pictures, names)
    if result["error"].isna().all():
        result = result.drop(columns=["error"])
    return _joined(pd.DataFrame(index=result.index), result, out_csv)


def _pictures_in_zip(path: Path) -> tuple[list[str], list[bytes]]:
    """Every picture-named file of a zip, read in memory under the data sets' zip limits."""
    from studio.datasets.images import zip_pictures
    from studio.errors import DatasetError

    try:
        with zipfile.ZipFile(path) as zf:
            found = list(zip_pictures(zf, path.name))
    except DatasetError as err:
        raise BundleError(str(err)) from None
    return [name for name, _ in found], [data for _, data in found]
