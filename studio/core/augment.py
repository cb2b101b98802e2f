"""Random picture changes while training (augmentation): one definition, two ways to apply it.

:func:`sample_params` draws, for each picture of a batch, its own random crop (torchvision's
RandomResizedCrop: area share and aspect ratio), rotation (RandomRotation), mirror flips
(RandomHorizontalFlip / RandomVerticalFlip) and colour changes (ColorJitter: brightness, contrast,
saturation). Training applies them to whole batches on the training device in
``lightning_modules.image.data.BatchAugmenter`` (one affine resample per batch; torchvision's v2
transforms draw one set of parameters per call, so a batch would share a single flip and angle).
:func:`preview` applies the same parameters with Pillow for the Train page: numpy and Pillow only,
no torch, so the page stays instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
RATIO_RANGE = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default


@dataclass(frozen=True)
class AugmentParams:
    """Per-picture parameters (arrays of length n). Geometry maps output to input positions in
    normalised coordinates (-1 … 1 across the picture): ``input = R(angle) · diag(width·flip_x,
    height·flip_y) · output + (center_x, center_y)``."""

    width: np.ndarray
    height: np.ndarray
    center_x: np.ndarray
    center_y: np.ndarray
    angle: np.ndarray
    flip_x: np.ndarray
    flip_y: np.ndarray
    brightness: np.ndarray
    contrast: np.ndarray
    saturation: np.ndarray

    def __len__(self) -> int:
        return len(self.width)

    def matrices(self) -> np.ndarray:
        """``float32 [n, 2, 3]``: the affine matrices (``theta`` of ``torch.nn.functional.affine_grid``)."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        sx, sy = self.width * self.flip_x, self.height * self.flip_y
        theta = np.stack(
            [
                np.stack([cos * sx, -sin * sy, self.center_x], axis=1),
                np.stack([sin * sx, cos * sy, self.center_y], axis=1),
            ],
            axis=1,
        )
        return theta.astype(np.float32)

    @property
    def moves(self) -> bool:
        """Whether any picture's geometry changes (otherwise resampling can be skipped)."""
        return bool(
            np.any(self.width != 1)
            or np.any(self.height != 1)
            or np.any(self.angle != 0)
            or np.any(self.flip_x != 1)
            or np.any(self.flip_y != 1)
        )

    @property
    def recolours(self) -> bool:
        return bool(
            np.any(self.brightness != 1) or np.any(self.contrast != 1) or np.any(self.saturation != 1)
        )


def _setting(settings: Any, name: str) -> Any:
    return settings[name] if isinstance(settings, dict) else getattr(settings, name)


def sample_params(rng: np.random.Generator, n: int, settings: Any) -> AugmentParams:
    """Draw parameters for ``n`` pictures from the spec's image settings (an ``ImageSpec`` or its dict)."""
    crop_scale = float(_setting(settings, "crop_scale"))
    degrees = float(_setting(settings, "rotation_degrees"))
    jitter = float(_setting(settings, "color_jitter"))
    ones = np.ones(n)
    if crop_scale < 1.0:
        area = rng.uniform(crop_scale, 1.0, n)
        ratio = np.exp(rng.uniform(math.log(RATIO_RANGE[0]), math.log(RATIO_RANGE[1]), n))
        width = np.minimum(np.sqrt(area * ratio), 1.0)
        height = np.minimum(np.sqrt(area / ratio), 1.0)
        center_x = rng.uniform(-1.0, 1.0, n) * (1.0 - width)
        center_y = rng.uniform(-1.0, 1.0, n) * (1.0 - height)
    else:
        width, height, center_x, center_y = ones, ones.copy(), np.zeros(n), np.zeros(n)
    angle = np.deg2rad(rng.uniform(-degrees, degrees, n)) if degrees > 0 else np.zeros(n)
    flip_x = np.where(rng.random(n) < 0.5, -1.0, 1.0) if _setting(settings, "horizontal_flip") else ones
    flip_y = np.where(rng.random(n) < 0.5, -1.0, 1.0) if _setting(settings, "vertical_flip") else ones
    if jitter > 0:
        low, high = max(0.0, 1.0 - jitter), 1.0 + jitter
        brightness, contrast, saturation = (rng.uniform(low, high, n) for _ in range(3))
    else:
        brightness, contrast, saturation = ones, ones, ones
    return AugmentParams(
        width, height, center_x, center_y, angle, flip_x, flip_y, brightness, contrast, saturation
    )


def recolour(pixels: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """ColorJitter's brightness, contrast and saturation (in that order) on ``float HWC`` in 0–1."""
    weights = np.asarray(GRAY_WEIGHTS, dtype=pixels.dtype)
    x = np.clip(pixels * brightness, 0.0, 1.0)
    mean = float((x @ weights).mean())
    x = np.clip((x - mean) * contrast + mean, 0.0, 1.0)
    gray = (x @ weights)[..., None]
    return np.clip((x - gray) * saturation + gray, 0.0, 1.0)


def apply_with_pillow(pixels: np.ndarray, params: AugmentParams, index: int) -> np.ndarray:
    """Picture ``index`` of ``params`` applied to ``uint8 [S, S, 3]`` with Pillow (bilinear, black
    outside the picture, as training does)."""
    size_y, size_x = pixels.shape[:2]
    theta = params.matrices()[index].astype(np.float64)
    # Normalised -> pixel coordinates (pixel centres at +0.5, the picture spans -1 … 1).
    a, b, tx = theta[0]
    c, d, ty = theta[1]
    coefficients = (
        a,
        b * size_x / size_y,
        size_x / 2 * (tx + 1 - a - b),
        c * size_y / size_x,
        d,
        size_y / 2 * (ty + 1 - c - d),
    )
    image = Image.fromarray(pixels)
    if params.moves:
        image = image.transform(image.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    out = np.asarray(image, dtype=np.float32) / 255.0
    if params.recolours:
        out = recolour(out, params.brightness[index], params.contrast[index], params.saturation[index])
    return np.round(out * 255.0).astype(np.uint8)


def preview(pixels: np.ndarray, settings: Any, n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """``n`` random variants of one prepared picture (``uint8 [S, S, 3]``, e.g. from
    ``studio.core.image_io.load_square``), as training would show them."""
    params = sample_params(np.random.default_rng(seed), n, settings)
    return [apply_with_pillow(pixels, params, i) for i in range(n)]
