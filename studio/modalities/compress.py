"""A small version of a model: its ONNX network quantised to 8-bit integers with ONNX Runtime, measured
against the original on the same test inputs (file size, CPU time per row or picture, test score), and
refused when it loses more than a tolerance.

Each data kind says what its network's inputs are (``compress_model`` in ``studio/modalities/<kind>/``):
tables quantise dynamically (weights to int8, activations scaled on the fly: what suits an MLP), pictures
statically, calibrated on training pictures (weights and activations to int8: what suits a CNN). Both
files run in ONNX Runtime alone, so the small version needs neither the studio nor torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from studio.modalities.analysis import Analysis, AnalysisRefused

SMALL_FILE = "model-int8.onnx"
SMALL_BUNDLE = "model-int8.zip"
TOLERANCE = {"accuracy": 0.01, "R²": 0.02}
"""The most a small version may lose by default: 1 point of accuracy, 0.02 of R²."""
LATENCY_BATCHES = 20


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # per row / picture on one core: comparable on a shared machine
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds(sess: Any, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The network's inputs by name, in the order the kind hands them (an empty table part left out)."""
    from studio.core.runtime import onnx_feeds

    return onnx_feeds([i.name for i in sess.get_inputs()], arrays)


def outputs(sess: Any, arrays: list[np.ndarray], batch: int = 256) -> np.ndarray:
    n = len(arrays[0])
    return np.concatenate(
        [sess.run(None, feeds(sess, [a[s : s + batch] for a in arrays]))[0] for s in range(0, n, batch)]
    )


def latency(sess: Any, arrays: list[np.ndarray], batch: int) -> float:
    """Seconds per row / picture, predicted ``batch`` at a time (the best of a few passes)."""
    one = feeds(sess, [a[:batch] for a in arrays])
    sess.run(None, one)  # warm
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(LATENCY_BATCHES):
            sess.run(None, one)
        best = min(best, (time.perf_counter() - started) / LATENCY_BATCHES)
    return best / len(next(iter(one.values())))


class Calibration:
    """ONNX Runtime's calibration reader over a few batches of training inputs."""

    def __init__(self, sess: Any, arrays: list[np.ndarray], batch: int = 16):
        self.batches = [feeds(sess, [a[s : s + batch] for a in arrays]) for s in range(0, len(arrays[0]), batch)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.batches.pop(0) if self.batches else None

    def rewind(self) -> None:  # onnxruntime >= 1.16 may ask
        pass


def quantise(original: Path, small: Path, calibration: list[np.ndarray] | None) -> str:
    """Write the int8 version of ``original``: static (calibrated on ``calibration``) or dynamic."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = small.with_name("prepared.onnx")
    try:
        quant_pre_process(str(original), str(prepared), skip_symbolic_shape=True)
    except Exception:  # an optimisation only: quantise the original as it is
        prepared = original
    if calibration is None:
        quantize_dynamic(str(prepared), str(small), weight_type=QuantType.QInt8)
        return "dynamic int8 (ONNX Runtime): weights stored as 8-bit integers"
    quantize_static(
        str(prepared),
        str(small),
        Calibration(session(original), calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    if prepared != original:
        prepared.unlink(missing_ok=True)
    return "static int8 (ONNX Runtime, calibrated on training pictures): weights and activations as 8-bit integers"


def small_of(spec: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Which run a small version is of: its name and MLflow run id (the job hands it in ``options``)."""
    return {"run_name": spec.name, "run_id": options.get("run_id")}


def compare(
    original: Path,
    out: Path,
    test: list[np.ndarray],
    score: Callable[[np.ndarray], float],
    metric: str,
    *,
    bundle: Path,
    predictor: str,
    of: dict[str, Any],
    calibration: list[np.ndarray] | None,
    tolerance: float | None,
    batch: int,
    unit: str,
    progress: Callable[[float], None],
) -> Analysis:
    """Quantise, measure both on the test inputs, and refuse a small version that loses too much; an
    accepted one is also written as a bundle like the original ``bundle`` (predicted by the shipped
    runtime's class ``predictor``), saying it is the small version ``of`` (run name and id) and what was
    measured."""
    small = out / SMALL_FILE
    method = quantise(original, small, calibration)
    progress(0.5)
    found = {}
    for name, path in (("original", original), ("small", small)):
        sess = session(path)
        found[name] = {
            "size_bytes": path.stat().st_size,
            "seconds_per_item": latency(sess, test, batch),
            "score": score(outputs(sess, test)),
        }
        progress(0.5 + (0.2 if name == "original" else 0.45))
    allowed = TOLERANCE.get(metric, 0.01) if tolerance is None else float(tolerance)
    lost = found["original"]["score"] - found["small"]["score"]
    result = {
        **found,
        "method": method,
        "metric": metric,
        "unit": unit,
        "tolerance": allowed,
        "size_ratio": found["original"]["size_bytes"] / max(1, found["small"]["size_bytes"]),
        "speedup": found["original"]["seconds_per_item"] / max(1e-12, found["small"]["seconds_per_item"]),
        "score_loss": lost,
        "file": SMALL_FILE,
        "test_items": len(test[0]),
    }
    words = (
        f"{result['size_ratio']:.1f}× smaller, {result['speedup']:.1f}× faster per {unit} on one CPU core; "
        f"test {metric} {found['original']['score']:.3f} → {found['small']['score']:.3f}"
    )
    metrics = {
        "small/size_ratio": result["size_ratio"],
        "small/speedup": result["speedup"],
        "small/score_loss": lost,
    }
    if lost > allowed:
        small.unlink(missing_ok=True)
        result["file"] = None
        sentence = (
            f"The small version was refused: it loses {lost:.3f} of test {metric} (more than the "
            f"{allowed:g} allowed). Measured: {words}."
        )
        raise AnalysisRefused(sentence, Analysis(result, sentence, metrics))
    from studio.bundle.small import write_small_bundle

    measured = {key: result[key] for key in ("method", "metric", "unit", "original", "small", "test_items")}
    write_small_bundle(bundle, small, out / SMALL_BUNDLE, predictor, {**of, **measured})
    result["bundle"] = SMALL_BUNDLE
    progress(0.99)
    return Analysis(result, f"Small version: {words}.", metrics, {"small": small, "bundle": out / SMALL_BUNDLE})
