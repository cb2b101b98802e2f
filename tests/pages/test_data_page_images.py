"""The Data page with a zip of pictures: upload, progress, the profile (classes, sizes, samples, files
left out, warnings). Also holds the picture-zip helpers the other image page tests use."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from studio import data as datasets

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60
CLASSES = ("red", "blue", "stripes")


def picture(kind: str, rng: np.random.Generator, size: int = 32) -> bytes:
    """A PNG: a noisy red or blue square on grey, or black and white stripes (easy to tell apart)."""
    pixels = rng.normal(128, 15, (size, size, 3))
    if kind == "stripes":
        rows = (np.arange(size) + rng.integers(0, 6)) // 3 % 2 == 0
        pixels[rows] += 100
        pixels[~rows] -= 100
    else:
        side = int(rng.integers(size // 2, size - 4))
        x, y = rng.integers(0, size - side, 2)
        pixels[y : y + side, x : x + side] = [220, 40, 40] if kind == "red" else [40, 60, 220]
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def picture_zip(
    per_class: int = 12,
    seed: int = 0,
    extras: dict[str, bytes] | None = None,
    classes: dict[str, str] | None = None,
) -> bytes:
    """``shapes/<class>/<n>.png`` for each class (``classes``: folder -> kind of picture, default one
    folder per kind in :data:`CLASSES`), plus any ``extras`` (name -> bytes)."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for folder, kind in (classes or {kind: kind for kind in CLASSES}).items():
            for i in range(per_class):
                zf.writestr(f"shapes/{folder}/{i:03d}.png", picture(kind, rng))
        for name, data in (extras or {}).items():
            zf.writestr(name, data)
    return out.getvalue()


def _frame(at: AppTest, column: str):
    """The first table on the page that has ``column``."""
    return next(f.value for f in at.dataframe if column in f.value.columns)


@pytest.fixture
def app(studio_home: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_uploading_a_zip_of_pictures_shows_classes_sizes_samples_and_what_was_left_out(app: AppTest) -> None:
    uploader = app.file_uploader(key="data_upload")
    assert "zip" in uploader.allowed_type or ".zip" in uploader.allowed_type
    extras = {"shapes/red/notes.txt": b"not a picture", "__MACOSX/shapes/._x.png": b"junk"}
    uploader.upload("shapes.zip", picture_zip(extras=extras), "application/zip")
    app.run()
    app.button(key="data_add_upload").click().run()

    assert not app.exception, [e.value for e in app.exception]
    (stored,) = datasets.list_datasets()
    assert stored.kind == datasets.KIND_IMAGES and stored.n_rows == 36
    assert app.success[0].value == "Added 'shapes': 36 pictures in 3 classes."
    assert app.selectbox(key="data_selected").value == stored.id
    assert {m.label: m.value for m in app.metric} == {
        "Pictures": "36",
        "Classes": "3",
        "Usual size": "32 × 32 px",
        "Files left out": "2",
    }
    classes = _frame(app, "Class")
    assert list(classes["Class"]) == ["blue", "red", "stripes"] and list(classes["Pictures"]) == [12, 12, 12]
    assert app.get("plotly_chart")  # the bar chart of pictures per class
    grid = app.get("image")
    assert len(grid) == 3 and all(len(images.proto.imgs) == 8 for images in grid)  # 8 samples per class
    assert any("**stripes** · 12 pictures" in m.value for m in app.markdown)
    skipped = _frame(app, "File in the zip")
    assert set(skipped["File in the zip"]) == {"shapes/red/notes.txt", "__MACOSX/shapes/._x.png"}
    assert all(reason for reason in skipped["Why it was left out"])
    warnings = [w.value for w in app.warning]
    assert any("2 file(s) in the zip were skipped" in w for w in warnings), warnings
    assert all("**What the studio does:**" in w for w in warnings)
    assert "all 32 × 32 px" in " ".join(m.value for m in app.markdown)
    assert "Kind" in _frame(app, "Name").columns


def test_a_zip_without_class_folders_is_a_plain_error_and_adds_nothing(app: AppTest) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("readme.txt", b"hello")
    app.file_uploader(key="data_upload").upload("empty.zip", out.getvalue(), "application/zip")
    app.run()
    app.button(key="data_add_upload").click().run()

    assert not app.exception
    assert len(app.error) == 1 and "empty.zip" in app.error[0].value
    assert not app.get("progress")  # the progress bar is gone with the error
    assert datasets.list_datasets() == []


def test_the_digits_sample_is_offered_and_added_as_pictures(app: AppTest) -> None:
    assert "digits" in app.info[0].value  # the welcome names the picture sample
    button = app.button(key="data_add_sample_digits")
    assert button.label == "Add sample: digits (pictures)"
    button.click().run()

    assert not app.exception, [e.value for e in app.exception]
    (stored,) = datasets.list_datasets()
    assert (stored.kind, stored.n_rows, stored.source_file) == (datasets.KIND_IMAGES, 1797, "sample:digits")
    assert app.success[0].value == "Added the digits (pictures) sample."
    metrics = {m.label: m.value for m in app.metric}
    assert (metrics["Pictures"], metrics["Classes"], metrics["Usual size"]) == ("1,797", "10", "32 × 32 px")
    classes = _frame(app, "Class")
    assert list(classes["Class"]) == [str(d) for d in range(10)] and classes["Pictures"].sum() == 1797
