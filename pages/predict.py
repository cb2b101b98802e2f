"""Predict: pick a trained model (or upload one), give new rows (or pictures), see and download the
predictions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from studio import jobs
from studio.app import runs_view as rv
from studio.app import ui
from studio.app.charts import metric_name
from studio.bundle import read_bundle_info
from studio.core.errors import StudioError
from studio.core.spec import ARCHITECTURES, main_metric
from studio.core.tasks import task_info
from studio.core.text import counted

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


@st.cache_resource(max_entries=4, show_spinner=False)
def loaded_bundle(path: str, mtime: float) -> Any:
    """The opened model, kept between reruns (keyed by file and its modification time)."""
    from studio.bundle import load_bundle  # imports torch and mlflow: only when predicting

    return load_bundle(path)


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


def choose_rows(info: dict[str, Any]) -> tuple[pd.DataFrame, str] | None:
    source = st.radio(
        "Where are the rows?", [UPLOAD_ROWS, STORED_ROWS], key="predict-rows-source", horizontal=True
    )
    if source == UPLOAD_ROWS:
        upload = st.file_uploader(
            "Rows to predict (CSV)",
            type=["csv", "tsv", "txt"],
            key="predict-rows-upload",
            help="One row per case, with the same column names as the data the model was trained on.",
        )
        if upload is None:
            st.caption("The target column may be missing: it is what the model fills in.")
            return None
        from studio.data import read_table_file

        return read_table_file(upload.getvalue(), filename=upload.name), f"upload:{upload.file_id}"
    from studio.data import list_datasets, load_table

    datasets = list_datasets()
    if not datasets:
        st.info("No stored data sets yet; add one on the **Data** page or upload a CSV file.")
        return None
    by_id = {info.id: info for info in datasets}
    chosen = st.selectbox(
        "Data set",
        list(by_id),
        format_func=lambda dataset_id: (
            f"{by_id[dataset_id].name} ({counted(by_id[dataset_id].n_rows, 'row')})"
        ),
        key="predict-rows-dataset",
    )
    return load_table(chosen), f"dataset:{chosen}"


def predict_section(model: Path, info: dict[str, Any], frame: pd.DataFrame, rows_key: str) -> None:
    missing = rv.missing_inputs(info, frame.columns)
    inputs = len(info.get("input_columns", []))
    if missing and len(missing) == inputs:
        st.error(
            "None of these rows' columns is an input of the model (names must match exactly). "
            f"It expects: {', '.join(map(ui.as_text, missing))}."
        )
        return
    if missing:
        st.warning(
            f"{len(missing)} of the model's {inputs} input columns are not in these rows and are treated as "
            f"missing: {', '.join(map(ui.as_text, missing))}. Predictions are less reliable."
        )
    st.caption(f"{counted(len(frame), 'row')}, {counted(len(frame.columns), 'column')}.")
    signature = f"{model}:{model.stat().st_mtime}:{rows_key}"
    if st.button("Predict", key="predict-run", type="primary", icon=":material/online_prediction:"):
        with st.spinner("Loading the model and predicting…"):
            try:
                result = rv.predict_rows(loaded_bundle(str(model), model.stat().st_mtime), frame)
            except StudioError as err:
                ui.show_error(err)
                return
            except Exception as err:  # the rows broke the model in a way the bundle does not foresee
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                st.error(
                    f"The model could not predict these rows ({ui.as_text(first)}). Check that they look like the "
                    "training data."
                )
                return
        st.session_state["predictions"] = (signature, result)
    saved = st.session_state.get("predictions")
    if not saved or saved[0] != signature:
        st.caption("Press **Predict** to add the model's predictions to every row.")
        return
    result = saved[1]
    st.subheader("Predictions")
    shown = "" if len(result) <= SHOWN_ROWS else f" (the first {SHOWN_ROWS} are shown; the download has all)"
    st.caption(
        f"{counted(len(result), 'row')}{shown}. The first columns are the model's answers"
        + (
            "; `probability_…` columns say how sure it is of each class."
            if info.get("task") == "classification"
            else "."
        )
    )
    guesses = int((result[WARNING_COLUMN].fillna("") != "").sum()) if WARNING_COLUMN in result else 0
    if guesses:
        st.warning(
            f"{guesses} of {len(result)} rows are guesses: their inputs are empty, or far outside the values the "
            f"model was trained on. The `{WARNING_COLUMN}` column says why for each; do not rely on them.",
            icon=":material/warning:",
        )
    st.dataframe(result.head(SHOWN_ROWS), key="predict-result")
    st.download_button(
        "Download the predictions (CSV)",
        data=result.to_csv(index=False).encode("utf-8"),
        file_name=f"predictions-{info.get('target', {}).get('name', 'model')}.csv",
        mime="text/csv",
        key="predict-download",
        type="primary",
        icon=":material/download:",
        on_click="ignore",
    )


def choose_pictures() -> tuple[list[str], list[bytes], str] | None:
    uploads = st.file_uploader(
        "Pictures to predict (one or many, or a zip of them)",
        type=PICTURE_TYPES,
        accept_multiple_files=True,
        key="predict-pictures-upload",
        help="Photos or other pictures (JPEG, PNG, …); a zip may hold folders of them. Each is resized as in "
        "training.",
    )
    if not uploads:
        st.caption("Drop one or more pictures here, or a zip of them. The model says which class each shows.")
        return None
    names, pictures = rv.pictures_from_uploads([(upload.name, upload.getvalue()) for upload in uploads])
    if not pictures:
        st.warning(
            "These files hold no pictures (JPEG, PNG, GIF, BMP, TIFF or WebP). Upload pictures instead."
        )
        return None
    return names, pictures, "pictures:" + ",".join(upload.file_id for upload in uploads)


@st.cache_data(show_spinner=False, max_entries=256)
def small_picture(data: bytes):
    from studio.app.images_view import thumbnail

    try:
        return thumbnail(data, 160)
    except ValueError:
        return None


def picture_card(row: dict[str, Any], data: bytes) -> None:
    with st.container(border=True):
        picture, words = st.columns([1, 1], vertical_alignment="center")
        shown = small_picture(data)
        if shown is not None:
            picture.image(shown, width="stretch")
        if row["error"]:
            words.markdown(":red[**Could not read it**]")
            words.caption(ui.as_text(row["error"]))
        else:
            words.markdown(f"**{ui.as_text(row['predicted'])}**  \n{row['probability']:.0%} sure")
            if row["runner_up"]:
                other, share = row["runner_up"]
                words.caption(f"next: {ui.as_text(other)} ({share:.0%})")
        words.caption(ui.as_text(row["name"]))


def predict_pictures_section(
    model: Path, info: dict[str, Any], chosen: tuple[list[str], list[bytes], str]
) -> None:
    names, pictures, pictures_key = chosen
    st.caption(f"{len(pictures)} picture{'s' if len(pictures) != 1 else ''}.")
    signature = f"{model}:{model.stat().st_mtime}:{pictures_key}"
    if st.button("Predict", key="predict-run", type="primary", icon=":material/online_prediction:"):
        with st.spinner("Loading the model and looking at the pictures…"):
            try:
                frame = loaded_bundle(str(model), model.stat().st_mtime).predict_images(pictures, names)
            except StudioError as err:
                ui.show_error(err)
                return
            except Exception as err:  # the pictures broke the model in a way the bundle does not foresee
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                st.error(f"The model could not look at these pictures ({ui.as_text(first)}).")
                return
        st.session_state["predictions"] = (signature, frame)
    saved = st.session_state.get("predictions")
    if not saved or saved[0] != signature:
        st.caption("Press **Predict** to see which class the model sees in each picture.")
        return
    frame = saved[1]
    classes = [str(c) for c in info.get("target", {}).get("classes") or []]
    results = rv.picture_results(frame, classes, info.get("target", {}).get("name", "label"))
    st.subheader("Predictions")
    unread = sum(1 for row in results if row["error"])
    st.caption(
        f"{len(results)} picture{'s' if len(results) != 1 else ''}"
        + (f", {unread} could not be read" if unread else "")
        + (
            f"; the first {SHOWN_PICTURES} are shown, the download has all"
            if len(results) > SHOWN_PICTURES
            else ""
        )
        + ". Each shows the class the model sees and how sure it is."
    )
    shown = results[:SHOWN_PICTURES]
    for start in range(0, len(shown), PICTURES_PER_ROW):
        columns = st.columns(PICTURES_PER_ROW)
        for offset, row in enumerate(shown[start : start + PICTURES_PER_ROW]):
            with columns[offset]:
                picture_card(row, pictures[start + offset])
    table = frame.drop(columns=["error"]) if frame["error"].isna().all() else frame
    with st.expander("All predictions as a table"):
        st.dataframe(table, hide_index=True, key="predict-result")
    st.download_button(
        "Download the predictions (CSV)",
        data=table.to_csv(index=False).encode("utf-8"),
        file_name="predictions-pictures.csv",
        mime="text/csv",
        key="predict-download",
        type="primary",
        icon=":material/download:",
        on_click="ignore",
    )


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


def picture_inputs(model_path: Path, model_info: dict[str, Any]) -> None:
    st.subheader("2. Give the pictures")
    try:
        chosen_pictures = choose_pictures()
    except StudioError as err:
        ui.show_error(err)
        chosen_pictures = None
    if chosen_pictures is not None:
        st.subheader("3. Predict")
        predict_pictures_section(model_path, model_info, chosen_pictures)


def row_inputs(model_path: Path, model_info: dict[str, Any]) -> None:
    st.subheader("2. Give the rows to predict")
    try:
        rows = choose_rows(model_info)
    except StudioError as err:
        ui.show_error(err)
        rows = None
    if rows is not None:
        st.subheader("3. Predict")
        predict_section(model_path, model_info, *rows)


INPUTS = {"image": picture_inputs, "tabular": row_inputs}
"""How a bundle of each kind is given what to predict (the bundle's ``kind``)."""

if model_path is not None and model_info is not None:
    st.markdown(rv.model_summary(model_info))
    INPUTS[model_info["kind"]](model_path, model_info)
