"""The Predict page: a model trained here (real tiny training), rows from an upload or a stored data set,
and the plain errors for a file that is not a model and rows without the model's columns."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio import jobs
from studio.app import runs_view as rv
from tests.mlflow_store import new_store
from tests.pages.test_runs_page import run_in_process, spec, tiny_dataset

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "predict.py")


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory):
    """One real tiny training shared by this module's tests (what ``studio_home`` sets, module-wide)."""
    root = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", new_store(f"{root}/mlruns"))
        done = run_in_process(spec(tiny_dataset(root), "colour model"))
        assert done.state == jobs.SUCCEEDED, done.reason
        yield done


@pytest.fixture
def trained(trained_home: jobs.Job) -> jobs.Job:
    return trained_home


def page(job_id: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    if job_id:
        at.query_params["job"] = job_id
    return at.run()


def test_predict_uploaded_rows_and_a_stored_data_set_with_a_trained_model(trained: jobs.Job) -> None:
    at = page(trained.id)
    assert not at.exception
    assert at.selectbox(key="predict-model-job").value == trained.id
    assert "Predicts **y**" in at.markdown[0].value and "colour" in at.markdown[0].value

    rows = b"a,b,colour\n0.9,0.8,red\n0.1,0.05,blue\n0.5,0.6,\n"
    at.file_uploader(key="predict-rows-upload").upload("new rows.csv", rows, "text/csv").run()
    assert not at.exception and not at.error
    at.button(key="predict-run").click().run()

    assert not at.exception and not at.error
    result = at.dataframe[0].value
    assert list(result.columns[:3]) == ["predicted_y", "probability_no", "probability_yes"]
    assert len(result) == 3 and set(result["predicted_y"]) <= {"yes", "no"}
    assert result[["probability_no", "probability_yes"]].sum(axis=1).round(4).eq(1).all()
    assert list(result["a"]) == [0.9, 0.1, 0.5]
    assert at.download_button(key="predict-download").label == "Download the predictions (CSV)"

    at.radio(key="predict-rows-source").set_value("A stored data set").run()
    assert "Press **Predict**" in at.caption[-1].value  # the earlier result belongs to other rows
    at.button(key="predict-run").click().run()
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 80 and "y" in at.dataframe[0].value.columns


def test_each_model_says_which_data_set_and_column_it_was_trained_on(trained: jobs.Job) -> None:
    at = page(trained.id)
    (option,) = at.selectbox(key="predict-model-job").options
    day = datetime.fromtimestamp(trained.created_at)
    found = rv.job_verdict(trained)  # a dozen test rows: the verdict is added when it is a worrying one
    verdict = f" · {found.title.lower()}" if found is not None and found.worrying else ""
    assert re.fullmatch(
        rf"tiny · y · MLP · accuracy [0-9.]+%{verdict} \(run 'colour model', {day.day} {day:%b}\)", option
    ), option


def test_rows_with_nothing_in_them_or_far_outside_the_training_range_are_flagged(trained: jobs.Job) -> None:
    at = page(trained.id)
    rows = b"note,a,b,colour\nempty,,,\nfar,0.5,40,red\nusual,0.9,0.8,blue\nmostly empty,0.2,,\n"
    at.file_uploader(key="predict-rows-upload").upload("odd rows.csv", rows, "text/csv").run()
    at.button(key="predict-run").click().run()

    assert not at.exception and not at.error
    result = at.dataframe[0].value
    assert list(result.columns[:4]) == [
        "predicted_y",
        "probability_no",
        "probability_yes",
        "prediction_warning",
    ]
    empty, far, usual, mostly_empty = result["prediction_warning"]
    assert empty == "every input is empty: this is a guess from nothing"
    assert re.fullmatch(r"b 40 is far outside the training range \(0\.0\d+ to 0\.9\d+\)", far), far
    assert usual == ""
    assert mostly_empty == "2 of 3 inputs are empty: a rough guess"
    assert at.warning[0].value.startswith("3 of 4 rows are guesses: their inputs are empty, or far outside")


def test_rows_without_the_models_columns_and_a_file_that_is_no_model_are_plain_errors(
    trained: jobs.Job,
) -> None:
    at = page()
    at.file_uploader(key="predict-rows-upload").upload("other.csv", b"x,z\n1,2\n", "text/csv").run()
    assert not at.exception
    assert "None of these rows' columns is an input of the model" in at.error[0].value
    assert not [b for b in at.button if b.key == "predict-run"]

    at.file_uploader(key="predict-rows-upload").clear().upload(
        "part.csv", b"a,note\n0.3,x\n", "text/csv"
    ).run()
    assert "treated as missing: b, colour" in at.warning[0].value

    at.radio(key="predict-model-source").set_value("A model file (.zip) I have").run()
    at.file_uploader(key="predict-model-upload").upload("holiday.zip", b"not a zip", "application/zip").run()
    assert not at.exception
    assert "'holiday.zip' is not a zip file" in at.error[0].value

    at.file_uploader(key="predict-model-upload").clear().upload(
        "mine.zip", Path(trained.bundle_path).read_bytes(), "application/zip"
    ).run()
    assert not at.exception and not at.error
    assert "Predicts **y**" in at.markdown[0].value


def test_without_trained_models_the_page_says_what_to_do(studio_home: Path) -> None:
    at = page()

    assert not at.exception
    assert "No finished runs yet" in at.info[0].value
