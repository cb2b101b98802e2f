"""Slow: scikit-learn's handwritten digits (8×8 pictures written out as 32 px PNGs in class folders)
reach at least 0.95 test accuracy with the small CNN's defaults."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def digits_zip(path: Path) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    with zipfile.ZipFile(path, "w") as zf:
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            image = Image.fromarray((pixels * 255 / 16).astype(np.uint8), mode="L")
            out = io.BytesIO()
            image.resize((32, 32), Image.Resampling.BILINEAR).save(out, format="PNG")
            zf.writestr(f"digits/{label}/{i:04d}.png", out.getvalue())
    return path


@pytest.mark.slow
def test_digits_reach_95_percent_with_defaults(studio_home, tmp_path) -> None:
    from studio.core.spec import RunSpec
    from studio.data import add_image_zip, load_profile
    from studio.engine.training import train

    info = add_image_zip(digits_zip(tmp_path / "digits.zip"))
    profile = load_profile(info.id)
    assert profile["n_classes"] == 10 and profile["n_images"] >= 1700
    spec = RunSpec.from_dict({"task": "image_classification", "data": {"dataset_id": info.id}})
    result = train(spec)
    print(f"digits: {result.test_metrics} after {result.epochs_run} epochs in {result.seconds:.0f} s")
    assert result.test_metrics["test/accuracy"] >= 0.95
