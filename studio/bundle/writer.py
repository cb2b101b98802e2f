"""Writing a bundle: refuses non-finite weights, copies the shipped runtime files, saves the MLflow
model with explicit pip requirements, adds the ONNX export and a README, zips it."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import BundleError

if TYPE_CHECKING:
    import pandas as pd
    import torch


from studio.bundle.layout import (
    _CORE,
    _HERE,
    CODE_PREFIX,
    ENTRY_FILE,
    FILES_DIR,
    FORMAT,
    FORMAT_VERSION,
    INFO_FILE,
    ONNX_FILE,
    RUNTIME_FILE,
    WEIGHTS_FILE,
    _quiet_mlflow,
    flavour,
    python_snippet,
)

_log = logging.getLogger(__name__)


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


# Weights files deflate to about 90% of their size (MiniLM's 90 MB safetensors: 0.90 at level 6, 0.91 at
# level 1) at ~20 MB/s on this CPU: seconds of a bundle's writing for a tenth of its size. Large ones are
# stored as they are; everything else (code, JSON, tokenizer files, small networks) is deflated.
_STORED_SUFFIXES = {".safetensors", ".pt", ".pth", ".bin", ".onnx", ".data"}
_STORED_FROM_BYTES = 1 << 20


def _zip_method(file: Path) -> int:
    """How ``file`` goes into a bundle: stored when it is a large weights file, else deflated."""
    if file.suffix in _STORED_SUFFIXES and file.stat().st_size >= _STORED_FROM_BYTES:
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


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
    with _quiet_mlflow(), _no_package_scan():
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
                    zf.write(file, file.relative_to(model_dir).as_posix(), compress_type=_zip_method(file))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _no_package_scan() -> Iterator[None]:
    """Save without MLflow's scan of every installed distribution (1.4 s, once per process).

    ``save_model`` checks the bundle's pip requirements against the installed versions, which it reads
    from each package's metadata (milliseconds). First, though, it maps every installed distribution to
    the modules it holds, only so that a package without metadata can be asked for its ``__version__``
    instead. The bundle's requirements (:func:`_pip_requirements`: mlflow, torch, pandas, numpy, and a
    kind's own such as transformers) are all installed distributions, so an empty map for this save gives
    the same check and the same warnings without the scan. The map is forgotten again afterwards, so
    anything else in the process that needs it builds it as before. (A private name of MLflow's: where
    it is missing, the save goes on as MLflow does it.)"""
    try:
        from mlflow.utils import requirements_utils as reqs
    except ImportError:  # pragma: no cover - an MLflow without it
        yield
        return
    if getattr(reqs, "_MODULES_TO_PACKAGES", ...) is not None:  # built already, or not MLflow's name
        yield
        return
    reqs._MODULES_TO_PACKAGES = {}
    try:
        yield
    finally:
        reqs._MODULES_TO_PACKAGES = None
        reqs._PACKAGES_TO_MODULES = None


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
    """The bundle's README.md: what it is, how to use it, what its files are; the words that differ
    between kinds come from the kind's :class:`~studio.bundle.layout.BundleFlavour`."""
    how = flavour(info["kind"])
    onnx_line = (
        f"- `{info['onnx']['file']}`: the network alone (ONNX, dynamic batch axis); its inputs are described "
        "under `onnx` in `artifacts/studio_model.json`."
        if info["onnx"]["file"]
        else f"- No ONNX file: the export failed ({info['onnx']['error']})."
    ) + _small_note(info)
    return (
        f"# Training Studio model: {how.title(info)}\n\n"
        f"An MLflow pyfunc model. It needs only {how.needs} (not the studio):\n\n"
        f"```python\n{python_snippet(bundle_name, kind=info['kind'])}```\n\n"
        f"{how.predicts(info)}\n\n"
        + (
            f"`{info['target']['name']}` looks like money or a count: the network learned it on a log scale "
            "(log(1 + value)), and `predict` gives it back in its own units"
            + _smear_note(info["target"])
            + ".\n\n"
            if info.get("target", {}).get("log_scale")
            else ""
        )
        + "- `MLmodel`, `python_env.yaml`, `requirements.txt`: MLflow's description of the model.\n"
        f"- `{ENTRY_FILE}`: the code MLflow runs to load and call the model.\n"
        f"- `artifacts/{INFO_FILE}`: {how.info_holds}.\n"
        f"- `artifacts/{WEIGHTS_FILE}`: the weights (`torch.load(..., weights_only=True)`).\n"
        f"- {how.code_files}.\n"
        f"{onnx_line}\n" + (f"\n{info['ensemble']['text']}\n" if "ensemble" in info else "")
    )


def _smear_note(target: dict[str, Any]) -> str:
    """What a log-scale target's smearing factor does, for the bundle's README (empty without one)."""
    smear = float(target.get("smear", 1.0))
    if smear == 1.0:
        return ""
    return (
        f", times {smear:.4g} (`target.smear`, Duan's smearing from {int(target.get('smear_rows', 0)):,} "
        "validation rows): exp of the predicted log is a median-like value, and this factor makes it an average"
    )


def _small_note(info: dict[str, Any]) -> str:
    """What a small version's README adds (nothing for any other bundle)."""
    small = info.get("small_version")
    if not small:
        return ""
    return (
        f"\n\nThis is the small version of run '{small.get('run_name', '')}': {small.get('method', 'int8')}. "
        f"It predicts with `artifacts/{ONNX_FILE}` through ONNX Runtime (so it also needs onnxruntime); "
        f"`artifacts/{WEIGHTS_FILE}` is empty. What was measured against the original (size, CPU time, test "
        f"score) is under `small_version` in `artifacts/{INFO_FILE}`."
    )
