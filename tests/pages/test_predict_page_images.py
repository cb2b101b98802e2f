"""The Predict page with a picture model (the run trained for the run page's image tests): one picture,
several pictures and a zip of them, each shown with the predicted class and how sure the model is."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from studio import jobs
from tests.pages.test_data_page_images import picture
from tests.pages.test_runs_page_images import picture_job, trained_pictures  # noqa: F401 (fixtures)

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "predict.py")
CLASSES = {"blue", "crimson", "red", "stripes"}


def page(job_id: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.query_params["job"] = job_id
    return at.run()


def _cards(at: AppTest) -> list[str]:
    """The words beside each picture: ``**<class>**  \\n<n>% sure``."""
    return [m.value for m in at.markdown if m.value.startswith("**") and m.value.endswith("% sure")]


def test_one_picture_gets_its_class_and_probability_beside_its_thumbnail(picture_job: jobs.Job) -> None:  # noqa: F811
    at = page(picture_job.id)
    assert not at.exception and not at.error
    assert "Tells which of **4 classes** a picture shows" in at.markdown[0].value
    uploader = at.file_uploader(key="predict-pictures-upload")
    assert uploader.accept_multiple_files and "zip" in " ".join(uploader.allowed_type)

    stripes = picture("stripes", np.random.default_rng(7))
    uploader.upload("mine.png", stripes, "image/png").run()
    at.button(key="predict-run").click().run()

    assert not at.exception and not at.error
    (card,) = _cards(at)
    predicted, sure = card.split("**")[1], int(card.rsplit("\n", 1)[1].removesuffix("% sure"))
    assert predicted == "stripes" and 25 <= sure <= 100
    assert len(at.get("image")) == 1  # the thumbnail beside it
    assert any(c.value == "mine.png" for c in at.caption)
    table = at.dataframe[0].value
    assert list(table.columns[:2]) == ["image", "predicted_label"] and len(table) == 1
    assert at.download_button(key="predict-download").label == "Download the predictions (CSV)"


def test_many_pictures_and_a_zip_of_them_with_an_unreadable_file(picture_job: jobs.Job) -> None:  # noqa: F811
    rng = np.random.default_rng(3)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("new/a.png", picture("blue", rng))
        zf.writestr("new/b.png", picture("stripes", rng))
        zf.writestr("new/broken.jpg", b"not really a picture")
        zf.writestr("__MACOSX/new/._a.png", b"junk")
        zf.writestr("new/readme.txt", b"skipped: not a picture name")
    at = page(picture_job.id)
    uploader = at.file_uploader(key="predict-pictures-upload")
    uploader.upload("one.png", picture("red", rng), "image/png")
    uploader.upload("more.zip", packed.getvalue(), "application/zip").run()
    assert not at.exception and not at.error
    assert "4 pictures." in [c.value for c in at.caption]
    at.button(key="predict-run").click().run()

    assert not at.exception and not at.error
    cards = _cards(at)
    assert len(cards) == 3 and all(card.split("**")[1] in CLASSES for card in cards)
    assert any("**Could not read it**" in m.value for m in at.markdown)
    assert any("1 could not be read" in c.value for c in at.caption)
    assert len(at.get("image")) == 3  # no thumbnail for the broken file
    table = at.dataframe[0].value
    assert list(table["image"]) == [
        "one.png",
        "more.zip/new/a.png",
        "more.zip/new/b.png",
        "more.zip/new/broken.jpg",
    ]
    assert table["error"].notna().sum() == 1


def test_a_zip_without_pictures_says_what_to_upload(picture_job: jobs.Job) -> None:  # noqa: F811
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("notes.txt", b"hello")
    at = page(picture_job.id)
    at.file_uploader(key="predict-pictures-upload").upload(
        "notes.zip", packed.getvalue(), "application/zip"
    ).run()

    assert not at.exception
    assert "hold no pictures" in at.warning[0].value
    assert not [b for b in at.button if b.key == "predict-run"]
