"""Reading pictures the same way everywhere: ingest, the training cache, previews and model bundles.

Imports only the standard library, numpy and Pillow (cheap; no torch, no studio). Model bundles ship a
copy of this file beside ``training_studio_runtime.py``, so a bundle prepares a picture, pixel for
pixel, as training did.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

IMAGE_IO_VERSION = 1
RESIZE_METHOD = "shorter side to size (bilinear, antialiased), then centre crop to size x size"
MAX_PIXELS = 64_000_000
"""Pictures larger than this (64 megapixels) are refused: decoding them takes too much memory."""


class UnreadableImage(ValueError):
    """The bytes are not a picture Pillow can decode fully; ``str()`` says why in plain words."""


def _open(source: Any) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    return Image.open(Path(source))


def open_image(source: Any, draft_size: int | None = None) -> Image.Image:
    """A fully decoded RGB picture from a path, raw bytes or a PIL image.

    The EXIF orientation is applied (phone photos stand upright); grayscale, palette, CMYK, 16-bit and
    transparent pictures become RGB (transparent areas on white). ``draft_size`` lets JPEG decoding
    skip detail finer than that size needs (much faster for big photos). Raises :class:`UnreadableImage`.
    """
    try:
        image = _open(source)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UnreadableImage(
                f"it is too large ({width}×{height} pixels; at most {MAX_PIXELS:,} are read)"
            )
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage("the file does not exist") from None
    except Image.DecompressionBombError:
        raise UnreadableImage("it is too large to decode safely") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImage(
            "it is not a picture Pillow can read (not an image, or an unknown format)"
        ) from None
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError, MemoryError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableImage(f"it is damaged or cut short ({detail})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of a picture in any mode; transparency is flattened onto white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping (convert("L") clips at 255).
        values = np.asarray(image, dtype=np.float64)
        high = values.max() if values.size else 0.0
        scale = 255.0 / (65535.0 if high > 255 else 255.0)
        gray = np.clip(values * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = float(values.min(initial=0.0)), float(values.max(initial=1.0))
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """``uint8 [size, size, 3]``: the shorter side resized to ``size``, then the centre cropped square."""
    fitted = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8)


def load_square(source: Any, size: int) -> np.ndarray:
    """Decode, orient, convert and fit a picture: what the network sees before scaling (``HWC`` uint8)."""
    return fit_square(open_image(source, draft_size=size), size)


def thumbnail_png(image: Image.Image, max_side: int = 128) -> bytes:
    """A small PNG of a picture (aspect kept) for sample grids."""
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()
