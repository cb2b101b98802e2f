"""Predict: pick a trained model (or upload one), give new rows (or pictures), see and download the
predictions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from studio import jobs
from studio.app import runs_view as rv
from studio.app import ui
from studio.app.charts import metric_name
from studio.app.kinds import kind_views
from studio.bundle import read_bundle_info
from studio.core.errors import StudioError
from studio.core.spec import ARCHITECTURES, main_metric
from studio.core.tasks import task_info

ui.require_app()

TRAINED_HERE = "A model trained here"
UPLOADED = "A model file (.zip) I have"
UPLOAD_ROWS = "Upload a CSV file"
STORED_ROWS = "A stored data set"
SHOWN_ROWS = 1000
SHOWN_PICTURES = 60
PICTURES_PER_ROW = 3
PICTURE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "zip"]
WARNING_COLUMN = "prediction_warning"  # bundle_runtime.WARNING_COLUMN, without importing torch here


def short_architecture(name: str) -> str:
    """``MLP`` for "Neural network (MLP)", ``Small CNN`` for "Small CNN (from scratch)"."""
    title = ARCHITECTURES[name].title if name in ARCHITECTURES else name
    words, _, inside = title.partition(" (")
    inside = inside.rstrip(")")
    return inside if inside.isupper() else words


def model_option(job: jobs.Job, dataset_names: dict[str, str]) -> str:
    """``penguins · species · MLP · accuracy 94.4% (run 'brave-fox', 12 Nov)``: the data set first."""
    spec = job.spec
    dataset = dataset_names.get(spec.data.dataset_id, spec.data.dataset_id)
    what = task_info(spec.task).unit if task_info(spec.task).fixed_target else spec.data.target
    main = "test/" + main_metric(spec.task).split("/", 1)[1]
    score = (
        f" · {metric_name(main)} {rv.format_metric(main, job.test_metrics[main])}"
        if main in job.test_metrics
        else ""
    )
    found = rv.job_verdict(job)
    if found is not None and found.worrying:  # say it where the model is picked, too
        score += f" · {found.title.lower()}"
    day = datetime.fromtimestamp(job.created_at)
    network = short_architecture(spec.architecture.name)
    return f"{dataset} · {what} · {network}{score} (run '{job.name}', {day.day} {day:%b})"


def choose_trained_model() -> Path | None:
    models = rv.trained_models(jobs.list_jobs(states=[jobs.SUCCEEDED]))
    if not models:
        st.info(
            "No finished runs yet. Train a model on the **Train** page, or choose "
            f"'{UPLOADED}' above to use a model file you downloaded before."
        )
        return None
    ids = [job.id for job in models]
    by_id = {job.id: job for job in models}
    dataset_names = {info.id: info.name for info in ui.list_datasets()}
    wanted = st.query_params.get("job")
    chosen = st.selectbox(
        "Model",
        ids,
        index=ids.index(wanted) if wanted in ids else 0,
        format_func=lambda job_id: model_option(by_id[job_id], dataset_names),
        key="predict-model-job",
        help="Finished runs, newest first: the data set, what the model predicts, the network, its test score, "
        "then the run's name and day.",
    )
    try:
        return rv.bundle_file(by_id[chosen])
    except StudioError as err:
        ui.show_error(err)
        return None


def choose_uploaded_model() -> Path | None:
    upload = st.file_uploader(
        "Model file",
        type=["zip"],
        key="predict-model-upload",
        help="The .zip the Runs page downloads ('Download the model').",
    )
    if upload is None:
        st.caption("Drop the model's .zip file here.")
        return None
    return rv.save_upload(upload.getvalue(), upload.name)


st.title("Predict")
st.caption(
    "Use a trained model on new rows or pictures: choose the model, give it rows (or pictures), and get a "
    "prediction for each."
)

st.subheader("1. Choose the model")
model_source = st.radio("Which model?", [TRAINED_HERE, UPLOADED], key="predict-model-source", horizontal=True)
model_path = choose_trained_model() if model_source == TRAINED_HERE else choose_uploaded_model()
model_info = None
if model_path is not None:
    try:
        model_info = read_bundle_info(model_path)
    except StudioError as err:
        ui.show_error(err)


if model_path is not None and model_info is not None:
    st.markdown(rv.model_summary(model_info))
    kind_views(model_info["kind"]).predict_inputs(model_path, model_info)
