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

from studio.core.errors import StudioError
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


def latencies(sessions: list[Any], arrays: list[np.ndarray], batch: int, rounds: int = 7) -> list[float]:
    """Seconds per row / picture of each session, predicted ``batch`` at a time: the best of ``rounds``
    rounds that take turns between the sessions, so that a shared machine's busy moments fall on all of
    them alike (timed one after the other under a load of ~27 on 2 cores, the CNN's int8 version once
    came out 1.03x faster; taking turns, 2.3-2.9x)."""
    ones = [feeds(sess, [a[:batch] for a in arrays]) for sess in sessions]
    best = [float("inf")] * len(sessions)
    for sess, one in zip(sessions, ones, strict=True):
        sess.run(None, one)  # warm
    for _ in range(rounds):
        for i, (sess, one) in enumerate(zip(sessions, ones, strict=True)):
            started = time.perf_counter()
            for _ in range(LATENCY_BATCHES):
                sess.run(None, one)
            best[i] = min(best[i], (time.perf_counter() - started) / LATENCY_BATCHES)
    return [seconds / len(next(iter(ones[0].values()))) for seconds in best]


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
    try:
        if calibration is None:
            quantize_dynamic(str(prepared), str(small), weight_type=QuantType.QInt8)
            return "dynamic int8 (ONNX Runtime): weights stored as 8-bit integers"
        # QDQ with per-channel weights: ONNX Runtime's advice for CPUs. Measured on the small CNN (48 px,
        # one picture at a time, one core, taking turns): QDQ 2.4-2.7x faster than float, QOperator
        # 2.3-3.2x, per-tensor weights 1.9-2.9x, reduce_range 2.3-2.9x: no variant faster beyond the noise.
        quantize_static(
            str(prepared),
            str(small),
            Calibration(session(original), calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        return (
            "static int8 (ONNX Runtime, calibrated on training pictures): weights and activations as 8-bit "
            "integers"
        )
    finally:
        if prepared != original:
            prepared.unlink(missing_ok=True)


PRUNED_OPS = ("Conv", "Gemm", "MatMul")
"""The operators whose weights (their second input) pruning zeroes: convolutions and fully connected
layers (torch's Conv and Linear), not embeddings or normalisation."""
MAX_PRUNE = 0.95


def prune(original: Path, pruned: Path, fraction: float) -> dict[str, Any]:
    """Global magnitude pruning of the ONNX network ``original`` into ``pruned``: the ``fraction`` of
    smallest weights (by absolute value) over all convolutions and fully connected layers together set
    to zero, as ``torch.nn.utils.prune.global_unstructured`` with L1 does. Done on the ONNX file, not the
    torch network, so every kind prunes exactly the graph its bundle ships (re-exporting would have to
    repeat each kind's export). Returns what it did: ``fraction``, ``weights``, ``sparsity`` (share now 0)."""
    import onnx
    from onnx import numpy_helper

    if not 0 <= fraction <= MAX_PRUNE:
        raise StudioError(f"Pruning takes a share of the weights between 0 and {MAX_PRUNE:g}, not {fraction:g}.")
    model = onnx.load(str(original))
    initializers = {i.name: i for i in model.graph.initializer}
    names = sorted(
        {
            node.input[1]
            for node in model.graph.node
            if node.op_type in PRUNED_OPS and len(node.input) > 1 and node.input[1] in initializers
        }
    )
    arrays = {name: numpy_helper.to_array(initializers[name]).copy() for name in names}
    arrays = {name: a for name, a in arrays.items() if a.dtype.kind == "f" and a.ndim >= 2}
    if not arrays:
        raise StudioError("This network has no convolution or fully connected weights to prune.")
    flat = np.concatenate([np.abs(a).ravel() for a in arrays.values()])
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: int(round(fraction * flat.size))]] = False
    start = 0
    for name, array in arrays.items():
        array.reshape(-1)[~keep[start : start + array.size]] = 0
        start += array.size
        initializers[name].CopyFrom(numpy_helper.from_array(array, name))
    onnx.save(model, str(pruned))
    zeros = sum(int((a == 0).sum()) for a in arrays.values())
    return {"fraction": float(fraction), "weights": int(flat.size), "sparsity": zeros / flat.size}


def compare(
    original: Path,
    out: Path,
    test: list[np.ndarray],
    score: Callable[[np.ndarray], float],
    metric: str,
    *,
    bundle: Path,
    predictor: str,
    run_name: str,
    options: dict[str, Any],
    calibration: list[np.ndarray] | None,
    batch: int,
    unit: str,
    progress: Callable[[float], None],
) -> Analysis:
    """Prune (``options["prune"]``: a share of the weights, if any), quantise, measure both on the test
    inputs, and refuse a small version that loses more than ``options["tolerance"]``. An accepted one is
    also written as a bundle like the original ``bundle`` (predicted by the shipped runtime's class
    ``predictor``), saying which run it is the small version of (``run_name``, ``options["run_id"]``)
    and what was measured."""
    small = out / SMALL_FILE
    fraction = float(options.get("prune") or 0)
    pruning = None
    if fraction:
        pruned = out / "pruned.onnx"
        pruning = prune(original, pruned, fraction)
        method = quantise(pruned, small, calibration)
        pruned.unlink(missing_ok=True)
        method = f"{pruning['sparsity']:.0%} of the weights zeroed (magnitude pruning), then {method}"
    else:
        method = quantise(original, small, calibration)
    progress(0.5)
    paths = {"original": original, "small": small}
    sessions = {name: session(path) for name, path in paths.items()}
    seconds = dict(zip(sessions, latencies(list(sessions.values()), test, batch), strict=True))
    progress(0.8)
    found = {
        name: {
            "size_bytes": path.stat().st_size,
            "seconds_per_item": seconds[name],
            "score": score(outputs(sessions[name], test)),
        }
        for name, path in paths.items()
    }
    progress(0.95)
    tolerance = options.get("tolerance")
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
        "pruning": pruning,
    }
    words = (
        f"{result['size_ratio']:.1f}× smaller, {result['speedup']:.1f}× faster per {unit} on one CPU core; "
        f"test {metric} {found['original']['score']:.3f} → {found['small']['score']:.3f}"
        + (f"; {pruning['sparsity']:.0%} of its weights zeroed" if pruning else "")
    )
    metrics = {
        "small/size_ratio": result["size_ratio"],
        "small/speedup": result["speedup"],
        "small/score_loss": lost,
        **({"small/sparsity": pruning["sparsity"]} if pruning else {}),
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

    keys = ("method", "metric", "unit", "original", "small", "test_items", "pruning")
    about = {"run_name": run_name, "run_id": options.get("run_id"), **{key: result[key] for key in keys}}
    write_small_bundle(bundle, small, out / SMALL_BUNDLE, predictor, about)
    result["bundle"] = SMALL_BUNDLE
    progress(0.99)
    return Analysis(result, f"Small version: {words}.", metrics, {"small": small, "bundle": out / SMALL_BUNDLE})
