"""``python -m studio predict picture_model.zip pictures.zip`` (and a folder) in a fresh process, as a
new user types it: the picture kind's zip reading is imported first there, which once ran into the data
set store importing it back (``ImportError: cannot import name 'KIND_IMAGES' from partially initialized
module``)."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio.modalities import predict_csv
from studio.modalities.image.bundle import write_image_bundle
from tests.images.conftest import CLASSES, encode, picture
from tests.images.test_bundle_images import make_state
from tests.studio_cli import run_studio

REPO = Path(__file__).resolve().parents[2]


def predict_cli(*args: str) -> subprocess.CompletedProcess:
    return run_studio("predict", *args)


@pytest.fixture(scope="module")
def picture_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("picture-model")
    return write_image_bundle(folder / "picture_model.zip", **make_state("small_cnn"))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(5)
    paths = []
    for i, kind in enumerate(CLASSES * 2):
        path = folder / f"{i}-{kind}.png"
        path.write_bytes(encode(picture(kind, rng, size=36)))
        paths.append(path)
    return paths


@pytest.mark.parametrize("packed", [True, False], ids=["zip", "folder"])
def test_predict_pictures_from_the_command_line(
    picture_model: Path, pictures: list[Path], tmp_path: Path, packed: bool
) -> None:
    if packed:
        data = tmp_path / "pictures.zip"
        with zipfile.ZipFile(data, "w") as zf:
            for path in pictures:
                zf.write(path, f"new/{path.name}")
        names = [f"new/{p.name}" for p in pictures]
    else:
        data = pictures[0].parent
        names = sorted(p.name for p in pictures)
    done = predict_cli(str(picture_model), str(data))
    assert done.returncode == 0, done.stderr[-3000:]
    printed = pd.read_csv(io.StringIO(done.stdout))
    assert list(printed["image"]) == names
    expected = predict_csv(picture_model, data)
    assert printed["predicted_label"].tolist() == expected["predicted_label"].tolist()
    assert set(printed["predicted_label"]) <= set(CLASSES)
