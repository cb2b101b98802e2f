"""A table model's small version: its MLP quantised dynamically to int8 (ONNX Runtime), measured on the
run's test rows against the original network (:mod:`studio.modalities.compress`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.modalities.analysis import bundle_predictor


def compress_model(*args: Any):
    """``(prepared, bundle_zip, spec, options, progress, out)``: the kind's small version."""
    return compress_rows(*args, inputs=table_inputs, small_predictor="OnnxTabularPredictor")


def table_inputs(predictor: Any, rows: Any) -> list[Any]:
    """The numbers and category codes the network takes for raw rows."""
    return list(predictor.preprocessor.transform(rows))


def compress_rows(
    prepared: Any,
    bundle_zip: Path,
    spec: Any,
    options: dict[str, Any],
    progress: Any,
    out: Path,
    *,
    inputs: Any,
    small_predictor: str,
):
    """The small version of a model of rows (a table, or rows with text): ``inputs(predictor, rows)``
    gives the network's inputs for raw rows; ``small_predictor`` is the class of the shipped runtime
    (beside the original's predictor) that predicts with the small ONNX file."""
    import shutil

    from studio.modalities.compress import compare
    from studio.modalities.tabular.explain import score, truth_of

    data = prepared.data
    bundle, predictor = bundle_predictor(bundle_zip)
    with bundle:
        if bundle.onnx_path is None or not bundle.onnx_path.is_file():
            raise StudioError("This model's bundle has no ONNX network to make a small version from.")
        original = out / "model.onnx"
        shutil.copyfile(bundle.onnx_path, original)
        rows, truth = truth_of(data.frame.iloc[data.test_idx], predictor.target)
        test = inputs(predictor, rows)
        metric = "accuracy" if predictor.target["task"] == "classification" else "R²"
        # a log-scale target's ONNX graph gives it back in its units (studio.bundle.onnx): scored as is
        target = predictor.target
        if target.get("log_scale"):
            target = {**target, "mean": 0.0, "std": 1.0, "log_scale": False}
        return compare(
            original,
            out,
            test,
            lambda outputs: score(outputs, truth, target),
            metric,
            bundle=bundle_zip,
            predictor=small_predictor,
            run_name=spec.name,
            options=options,
            calibration=None,
            batch=1,
            unit="row",
            progress=progress,
        )
