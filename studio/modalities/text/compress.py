"""A text model's small version: its network (bag of words or pretrained) quantised dynamically to int8
with ONNX Runtime, measured on the run's test rows against the original, as a table's is
(:func:`studio.modalities.tabular.compress.compress_rows`)."""

from __future__ import annotations

from typing import Any


def network_inputs(predictor: Any, rows: Any) -> list[Any]:
    """The numbers and category codes of the table part, then the text's token ids."""
    return [*predictor.preprocessor.transform(rows), predictor.encoder.encode(rows)[0]]


def compress_model(*args: Any):
    """``(prepared, bundle_zip, spec, options, progress, out)``: the kind's small version."""
    from studio.modalities.tabular.compress import compress_rows

    return compress_rows(*args, inputs=network_inputs, small_predictor="OnnxTextPredictor")
