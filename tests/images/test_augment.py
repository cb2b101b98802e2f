"""Augmentation: the batched version matches torchvision's v2 operations, draws parameters per
picture, and the Pillow preview the Train page shows matches what training does."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lightning_modules.image.data import BatchAugmenter
from studio.core.augment import AugmentParams, apply_with_pillow, sample_params
from studio.core.spec import ImageSpec

SIZE = 32


def smooth_batch(n: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def params(n: int = 1, **values) -> AugmentParams:
    one, zero = np.ones(n), np.zeros(n)
    base = {
        "width": one,
        "height": one,
        "center_x": zero,
        "center_y": zero,
        "angle": zero,
        "flip_x": one,
        "flip_y": one,
        "brightness": one,
        "contrast": one,
        "saturation": one,
    }
    return AugmentParams(**{**base, **{k: np.full(n, v, dtype=float) for k, v in values.items()}})


def test_each_operation_matches_torchvision_v2() -> None:
    x = smooth_batch()
    assert torch.equal(BatchAugmenter.apply(x, params(flip_x=-1)), TF.horizontal_flip(x))
    assert torch.equal(BatchAugmenter.apply(x, params(flip_y=-1)), TF.vertical_flip(x))
    for degrees in (25.0, -40.0):
        expected = TF.rotate(x, degrees, interpolation=InterpolationMode.BILINEAR)
        actual = BatchAugmenter.apply(x, params(angle=math.radians(degrees)))
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    crop = TF.resized_crop(
        x, 8, 8, 16, 16, [SIZE, SIZE], interpolation=InterpolationMode.BILINEAR, antialias=False
    )
    actual = BatchAugmenter.apply(x, params(width=0.5, height=0.5))
    inner = slice(2, SIZE - 2)  # the crop's border pixels see their outside neighbours here
    torch.testing.assert_close(actual[..., inner, inner], crop[..., inner, inner], atol=0.02, rtol=0)
    for factor in (0.6, 1.4):
        for name, reference in (
            ("brightness", TF.adjust_brightness),
            ("contrast", TF.adjust_contrast),
            ("saturation", TF.adjust_saturation),
        ):
            actual = BatchAugmenter.apply(x, params(**{name: factor}))
            torch.testing.assert_close(actual, reference(x, factor), atol=1e-6, rtol=0)


def test_parameters_differ_per_picture_and_off_means_unchanged() -> None:
    settings = ImageSpec(horizontal_flip=True, rotation_degrees=30, crop_scale=0.5, color_jitter=0.4)
    drawn = sample_params(np.random.default_rng(0), 64, settings)
    assert set(drawn.flip_x) == {-1.0, 1.0} and len(set(drawn.angle)) == 64
    assert np.all(np.abs(drawn.angle) <= math.radians(30)) and np.all(
        drawn.width * drawn.height >= 0.5 - 1e-9
    )
    assert np.all(np.abs(drawn.center_x) <= 1 - drawn.width + 1e-9)
    x = smooth_batch(64)
    out = BatchAugmenter(settings, seed=1)(x.clone())
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    off = ImageSpec(horizontal_flip=False, rotation_degrees=0, crop_scale=1.0, color_jitter=0.0)
    assert not off.augments
    unchanged = sample_params(np.random.default_rng(0), 4, off)
    assert not unchanged.moves and not unchanged.recolours


def test_the_pillow_preview_matches_training() -> None:
    settings = {
        "crop_scale": 0.6,
        "rotation_degrees": 30,
        "color_jitter": 0.3,
        "horizontal_flip": True,
        "vertical_flip": True,
    }
    drawn = sample_params(np.random.default_rng(5), 6, settings)
    x = smooth_batch(1, seed=3).repeat(6, 1, 1, 1)
    trained = (BatchAugmenter.apply(x, drawn).permute(0, 2, 3, 1).numpy() * 255).astype(np.float64)
    pixels = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for i in range(6):
        shown = apply_with_pillow(pixels, drawn, i).astype(np.float64)
        assert np.abs(shown - trained[i]).mean() < 3.0  # out of 255; edges differ a little


def test_page_helpers_stay_free_of_torch(tmp_path: Path) -> None:
    from PIL import Image

    from studio.app import images_view

    picture = tmp_path / "p.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(picture)
    variants = images_view.augmentation_preview(picture, ImageSpec(), size=48, n=4)
    assert len(variants) == 5 and all(v.shape == (48, 48, 3) and v.dtype == np.uint8 for v in variants)
    assert images_view.thumbnail(picture.read_bytes(), max_side=35).shape == (25, 35, 3)
    with pytest.raises(ValueError, match="not a picture"):
        images_view.thumbnail(b"no picture here")
    code = (
        "import sys, studio.app.images_view, studio.core.augment, studio.data, studio.core.pretrained, studio.core.image_io;"
        "print(sorted({'torch', 'torchvision', 'mlflow', 'pytorch_lightning'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    assert out.stdout.strip() == "[]"
