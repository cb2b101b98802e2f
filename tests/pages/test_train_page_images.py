"""The Train page with a data set of pictures: image networks and settings, the live preview of the
random changes, missing pretrained weights, and one real short run submitted from the page."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import data as datasets
from studio import jobs
from studio.core.spec import architectures_for
from tests.pages.test_data_page_images import picture_zip
from tests.pages.test_train_page import home  # noqa: F401 (fixture: fresh home, scheduler stopped after)

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


@pytest.fixture
def pictures_page(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:  # noqa: F811
    """The Train page with a zip of pictures as its data set (and no pretrained weights anywhere)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    datasets.add_image_zip(picture_zip(), filename="shapes.zip")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _image_urls(at: AppTest) -> list[str]:
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def test_pictures_get_image_networks_size_and_a_live_preview_of_the_random_changes(
    pictures_page: AppTest,
) -> None:
    at = pictures_page
    assert not [s for s in at.selectbox if s.key in ("train_target", "train_task")]
    assert any("**3 classes**" in m.value and "blue, red, stripes" in m.value for m in at.markdown)
    architecture = at.selectbox(key="train_architecture")
    assert architecture.value == "small_cnn" and architecture.options[0] == "Small CNN (from scratch)"
    assert "ResNet-18" in architecture.options and "Neural network (MLP)" not in architecture.options
    assert len(architecture.options) == len(architectures_for("image_classification"))
    for key in ("size", "rotation_degrees", "crop_scale", "color_jitter"):
        assert at.number_input(key=f"train__img__image__{key}")
    assert at.checkbox(key="train__img__image__horizontal_flip").value is True
    assert not [n for n in at.number_input if "preprocessing" in n.key]
    captions = " ".join(c.value for c in at.caption)
    assert "0 means automatic: pictures are resized to **32 × 32 px**, chosen for this network" in captions

    (preview,) = at.get("image")
    assert len(preview.proto.imgs) == 10  # the prepared picture and 9 random variants
    assert preview.proto.imgs[0].caption == "as prepared"
    first = _image_urls(at)
    at.button(key="train_preview_again").click().run()
    assert _image_urls(at)[1:] != first[1:]  # new random variants
    at.number_input(key="train__img__image__size").set_value(48).run()
    assert "resized to **48 × 48 px**." in " ".join(c.value for c in at.caption)
    assert not at.exception and not at.error
    text = " ".join(m.value for m in at.markdown)
    assert "pictures of 48 × 48 px" in text and "**Where it trains:** CPU (" in text


def test_missing_pretrained_weights_are_said_plainly_with_a_way_to_train_from_scratch(
    pictures_page: AppTest,
) -> None:
    at = pictures_page
    at.selectbox(key="train_architecture").set_value("resnet18").run()
    assert not at.exception
    assert any("pretrained weights are not on this machine" in c.value for c in at.caption)
    (blocker,) = [w.value for w in at.warning if "not on this machine" in w.value]
    assert "resnet18" in blocker and "train from scratch" in blocker
    assert at.button(key="train_submit").disabled

    at.button(key="train_from_scratch").click().run()
    assert not at.exception
    assert at.checkbox(key="train__arch_resnet18__pretrained").value is False
    assert not [w for w in at.warning if "not on this machine" in w.value]
    assert not at.button(key="train_submit").disabled

    at.checkbox(key="train__arch_resnet18__freeze_backbone").check().run()
    assert any("needs pretrained weights" in w.value for w in at.warning)
    assert at.button(key="train_submit").disabled


def test_pressing_train_runs_a_real_picture_job_to_the_end(pictures_page: AppTest) -> None:
    at = pictures_page
    at.selectbox(key="train_architecture").set_value("small_cnn").run()  # fast: the small CNN on 32 px
    at.number_input(key="train__img__training__epochs").set_value(2).run()
    at.text_input(key="train__img__name").set_value("pictures from the page").run()
    at.button(key="train_submit").click().run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]

    (job,) = jobs.list_jobs()
    assert job.name == "pictures from the page" and job.spec.task == "image_classification"
    assert job.spec.architecture.name == "small_cnn" and job.spec.training.epochs == 2
    assert job.spec.data.target == "label" and job.spec.training.precision == "bf16-mixed"
    assert at.query_params.get("job") in (job.id, [job.id])
    deadline = time.monotonic() + 150
    while (job := jobs.get_job(job.id)).is_active and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state == jobs.SUCCEEDED, f"{job.state}: {job.reason}"
    assert job.epoch == 2 and job.bundle_path and Path(job.bundle_path).is_file()
    assert "test/accuracy" in job.test_metrics


def test_digits_start_without_mirroring_and_turning_it_on_warns(
    home: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_wording import _digit_zip

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    shapes = datasets.add_image_zip(picture_zip(), filename="shapes.zip")
    digits = datasets.add_image_zip(_digit_zip(tmp_path / "digits.zip"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_dataset").set_value(digits.id).run()
    flip = at.checkbox(key="train__img__image__horizontal_flip")
    assert flip.value is False
    assert any("Mirroring starts off here: the classes look like characters" in c.value for c in at.caption)
    flip.check().run()
    assert any("Mirroring is on, but the classes look like characters" in w.value for w in at.warning)
    at.selectbox(key="train_dataset").set_value(shapes.id).run()  # photos-like classes: mirroring is fine
    assert at.checkbox(key="train__img__image__horizontal_flip").value is True
    assert not any("Mirroring" in w.value for w in at.warning)
