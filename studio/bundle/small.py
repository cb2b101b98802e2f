"""A small version's bundle: the original bundle's layout, its preprocessing, target and shipped code, with
the network replaced by the 8-bit ONNX file (``artifacts/model.onnx``) that its predictor runs through
ONNX Runtime (``OnnxTabularPredictor``, ``OnnxImagePredictor`` in the shipped runtime). ``weights.pt``
is empty: no torch weights travel. ``studio_model.json`` says under ``small_version`` which run it is the
small version of and what was measured (size, CPU time, test score, against the original)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from studio.bundle.layout import _CORE, CODE_PREFIX, ENTRY_FILE, FILES_DIR, ONNX_FILE, RUNTIME_FILE
from studio.bundle.reader import _open_zip, _read_info
from studio.bundle.writer import write_kind_bundle

WRITTEN_BY_THE_WRITER = (
    "format",
    "format_version",
    "weights",
    "onnx",
    "created",
    "studio_version",
    "runtime_version",
    "library_versions",
)
"""``studio_model.json`` fields every bundle gets anew when written (the rest is the original's)."""
ALWAYS_REQUIRED = ("mlflow", "torch=", "pandas", "numpy")
"""Requirements every bundle lists itself (the original's other lines, e.g. torchvision, are kept)."""


def write_small_bundle(
    original: Path, small_onnx: Path, path: Path, predictor: str, small_version: dict[str, Any]
) -> Path:
    """Write at ``path`` the bundle of ``original`` whose network is ``small_onnx``, predicted with the
    class ``predictor`` of the shipped code file the original's predictor comes from (this studio's
    version of it); ``small_version`` (what it is, what was measured) goes into its ``studio_model.json``."""
    import onnxruntime

    zf, prefix = _open_zip(original)
    with zf:
        info = _read_info(zf, prefix, Path(original).name)
        names = zf.namelist()
        shipped = {
            Path(name).name: _current_code(Path(name).name) or zf.read(name).decode("utf-8")
            for name in names
            if name.startswith(f"{prefix}artifacts/{CODE_PREFIX}")
            and name.endswith(".py")
            and Path(name).name not in (RUNTIME_FILE, ENTRY_FILE)
        }
        files = {
            name[len(f"{prefix}artifacts/") :]: zf.read(name)
            for name in names
            if name.startswith(f"{prefix}artifacts/{FILES_DIR}/") and not name.endswith("/")
        }
        listed = zf.read(f"{prefix}requirements.txt").decode() if f"{prefix}requirements.txt" in names else ""
    requirements = [
        line.strip()
        for line in listed.splitlines()
        if line.strip() and not line.startswith("-") and not line.startswith(ALWAYS_REQUIRED)
    ]
    kept = {key: value for key, value in info.items() if key not in WRITTEN_BY_THE_WRITER}
    kept["predictor"] = {**info["predictor"], "class": predictor}
    kept["small_version"] = small_version

    def network(staging: Path) -> dict[str, Any]:
        shutil.copyfile(small_onnx, staging / ONNX_FILE)
        for name, text in shipped.items():
            (staging / name).write_text(text, encoding="utf-8")
        for name, data in files.items():  # a pretrained text network's tokenizer and configuration
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        return {
            "onnx": {
                **info["onnx"],
                "file": f"artifacts/{ONNX_FILE}",
                "quantised": small_version.get("method", "int8"),
            }
        }

    return write_kind_bundle(
        path,
        kept,
        {},
        requirements=[*requirements, f"onnxruntime>={onnxruntime.__version__}"],
        extra=network,
        library_versions={"onnxruntime": onnxruntime.__version__},
    )



def _current_code(shipped_name: str) -> str | None:
    """This studio's version of a shipped code file (``training_studio_text_runtime.py`` ->
    ``studio/core/text_runtime.py``), so the small version's predictor class is there; ``None`` for a
    file of a kind that lives outside the studio."""
    source = _CORE / f"{shipped_name[len(CODE_PREFIX) :]}"
    return source.read_text(encoding="utf-8") if source.is_file() else None
