"""A picture model's small version: its CNN quantised statically to int8 with ONNX Runtime, calibrated on
training pictures, measured on the run's test pictures against the original network
(:mod:`studio.modalities.compress`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError
from studio.modalities.analysis import bundle_predictor

CALIBRATION_PICTURES = 64
MAX_TEST_PICTURES = 1000


def compress_model(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    import shutil

    from studio.modalities.compress import compare

    data = prepared.data
    folder = Path(data.folder)
    bundle, predictor = bundle_predictor(bundle_zip)
    with bundle:
        if bundle.onnx_path is None or not bundle.onnx_path.is_file():
            raise StudioError("This model's bundle has no ONNX network to make a small version from.")
        original = out / "model.onnx"
        shutil.copyfile(bundle.onnx_path, original)

        def inputs(indices: Any) -> np.ndarray:
            pixels = predictor.pixels([str(folder / data.relative_paths[i]) for i in indices])
            return predictor.network_input(pixels).contiguous().numpy()

        test_idx = list(data.test_idx[:MAX_TEST_PICTURES])
        truth = np.asarray(data.label_ids)[test_idx]
        test = [inputs(test_idx)]
        calibration = [inputs(list(data.train_idx[:CALIBRATION_PICTURES]))]
        progress(0.2)
        return compare(
            original,
            out,
            test,
            lambda logits: float((logits.argmax(axis=1) == truth).mean()),
            "accuracy",
            bundle=bundle_zip,
            predictor="OnnxImagePredictor",
            run_name=spec.name,
            options=options,
            calibration=calibration,
            batch=1,
            unit="picture",
            progress=progress,
        )
