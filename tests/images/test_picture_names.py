"""One rule for which files of a folder or zip are pictures to predict (the CLI, the bundle and the
Predict page share it): picture file names, never system files."""

from __future__ import annotations

import io
import zipfile

import pytest

from studio.modalities.image.ingest import named_like_picture, zip_pictures


@pytest.mark.parametrize(
    ("name", "picture"),
    [
        ("cats/1.jpg", True),
        ("CATS\\2.PNG", True),
        ("a.webp", True),
        ("notes.txt", False),
        ("__MACOSX/cats/._1.jpg", False),
        ("cats/._1.jpg", False),
        ("cats/.hidden.png", False),
        (".git/x.png", False),
        ("Thumbs.db", False),
        ("", False),
    ],
)
def test_picture_names(name: str, picture: bool) -> None:
    assert named_like_picture(name) is picture


def test_a_zip_gives_its_pictures_and_skips_the_rest() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cats/1.png", b"one")
        zf.writestr("__MACOSX/cats/._1.png", b"resource fork")
        zf.writestr("readme.txt", b"text")
        zf.writestr("dogs/", b"")
    with zipfile.ZipFile(buffer) as zf:
        assert list(zip_pictures(zf, "pets.zip")) == [("cats/1.png", b"one")]
