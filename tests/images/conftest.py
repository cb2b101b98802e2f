"""Small picture zips made with Pillow: a few classes a small CNN tells apart in a few epochs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("red", "blue", "stripes")


def picture(kind: str, rng: np.random.Generator, size: int = 24) -> Image.Image:
    """A noisy red or blue square on grey, or black and white horizontal stripes: separable by colour
    and pattern, with enough noise (position, brightness) that a network must learn them."""
    pixels = rng.normal(128, 20, (size, size, 3))
    if kind == "stripes":
        phase = rng.integers(0, 4)
        rows = ((np.arange(size) + phase) // 2) % 2 == 0
        pixels[rows] = rng.normal(230, 10)
        pixels[~rows] = rng.normal(30, 10)
    else:
        side = int(rng.integers(size // 2, size - 2))
        x, y = rng.integers(0, size - side, 2)
        colour = np.array([220, 40, 40] if kind == "red" else [40, 60, 220]) * rng.uniform(0.8, 1.1)
        pixels[y : y + side, x : x + side] = colour
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def make_zip(path: Path, per_class: int = 20, top: str | None = None, seed: int = 0, size: int = 24) -> Path:
    """``<top>/<class>/<n>.png`` for each class in :data:`CLASSES`."""
    rng = np.random.default_rng(seed)
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(path, "w") as zf:
        for kind in CLASSES:
            for i in range(per_class):
                zf.writestr(f"{prefix}{kind}/{i:03d}.png", encode(picture(kind, rng, size)))
    return path


@pytest.fixture
def shapes_zip(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "shapes.zip", per_class=20, top="shapes")


@pytest.fixture
def shapes_dataset(studio_home: Path, shapes_zip: Path):
    from studio.data import add_image_zip

    return add_image_zip(shapes_zip)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests here (minutes of training) run only when asked for with ``-m slow`` (as
    ``make test-slow`` does), so ``pytest tests/images`` stays about a minute."""
    if "slow" in (config.getoption("-m") or ""):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(skip)
