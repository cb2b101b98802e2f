"""The run page of a finished picture run: scores, the confusion matrix of the test pictures, the
gallery of misclassified ones (or a 'no mistakes' note), and the picture model's code snippet.

The trained run is shared with the Predict page's image tests (one real tiny training per session)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.core.spec import RunSpec
from tests.mlflow_store import new_store
from tests.pages.test_data_page_images import picture_zip
from tests.pages.test_runs_page import run_in_process

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "runs.py")


@dataclass(frozen=True)
class TrainedPictures:
    home: Path
    tracking_uri: str
    job_id: str


@pytest.fixture(scope="session")
def trained_pictures(tmp_path_factory: pytest.TempPathFactory) -> TrainedPictures:
    """A small CNN trained for real (in this process) on a tiny zip of pictures, in a home of its own.
    Two of its classes hold the same kind of picture, so the model is bound to mix them up."""
    from studio.data import add_image_zip

    root = tmp_path_factory.mktemp("pictures")
    uri = new_store(f"{root}/mlruns")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("CUDA_VISIBLE_DEVICES", "")
        classes = {"blue": "blue", "crimson": "red", "red": "red", "stripes": "stripes"}
        dataset = add_image_zip(picture_zip(classes=classes), filename="shapes.zip")
        spec = RunSpec.from_dict(
            {
                "name": "shapes model",
                "task": "image_classification",
                "data": {"dataset_id": dataset.id},
                "training": {"epochs": 2},
            }
        )
        done = run_in_process(spec)
        assert done.state == jobs.SUCCEEDED, done.reason
    return TrainedPictures(root / "home", uri, done.id)


@pytest.fixture
def picture_job(trained_pictures: TrainedPictures, monkeypatch: pytest.MonkeyPatch) -> jobs.Job:
    monkeypatch.setenv("STUDIO_HOME", str(trained_pictures.home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_pictures.tracking_uri)
    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    return jobs.get_job(trained_pictures.job_id)


def page(job_id: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["job"] = job_id
    return at.run()


def test_finished_picture_run_shows_the_confusion_matrix_and_the_mistakes(picture_job: jobs.Job) -> None:
    at = page(picture_job.id)

    assert not at.exception and not at.error
    assert "tells which class a picture shows" in at.caption[0].value
    assert "Accuracy" in {m.label for m in at.metric}
    assert any(h.value == "Where the model goes wrong" for h in at.subheader)
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key}
    heatmap = charts["confusion-matrix"]["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["x"] == ["blue", "crimson", "red", "stripes"]
    counts = [[int(v) for v in row] for row in heatmap["text"]]
    assert sum(map(sum, counts)) == 8  # 15% of 48 pictures kept for the test, 2 per class
    wrong = sum(counts[i][j] for i in range(4) for j in range(4) if i != j)
    assert wrong  # 'crimson' and 'red' look alike
    (gallery,) = at.get("image")
    assert len(gallery.proto.imgs) == wrong
    assert all(" · taken for " in img.caption and "% sure)" in img.caption for img in gallery.proto.imgs)
    assert any(f"**{wrong} test picture" in m.value for m in at.markdown)
    assert not any("No mistakes" in s.value for s in at.success)
    assert "'image': ['photo.jpg']" in at.code[0].value
    settings = at.dataframe[0].value
    assert {"Image size (pixels)", "Mirror left–right"} <= set(settings["Setting"])
    assert "Pictures" in set(settings["Section"]) and "Preparing the data" not in set(settings["Section"])


def test_a_run_without_mistakes_says_so(picture_job: jobs.Job, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.app import runs_view

    st.cache_data.clear()  # the page keeps each run's gallery for a while
    monkeypatch.setattr(
        runs_view,
        "mistake_gallery",
        lambda run_id, limit=24, side=128: {"pictures": [], "captions": [], "total": 0, "missing": 0},
    )
    try:
        at = page(picture_job.id)
    finally:
        st.cache_data.clear()  # keep the stand-in gallery away from other tests

    assert not at.exception
    assert any("No mistakes" in s.value for s in at.success)
    assert not at.get("image")
