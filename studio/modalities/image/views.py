"""The picture kind's parts of the pages: its Train-form behaviour (with its time guess), the run page's
confusion matrix and mistakes gallery, and the Predict page's picture upload and cards. Imported by the pages only (Streamlit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from studio import jobs
from studio.app import charts, explain_view, forms, ui
from studio.app import runs_view as rv
from studio.app.predict_view import loaded_bundle
from studio.core.errors import StudioError
from studio.core.spec import ARCHITECTURES, RunSpec, auto_image_size
from studio.modalities.image.bundle import predict_pictures


class PictureForm:
    """Pictures: the classes are the folders; each set starts from its own augmentation; pretrained
    weights must be on the machine; the guess counts the network's work per picture."""

    def starting_values(self, profile: dict[str, Any]) -> dict[str, Any]:
        from studio.data import image_defaults

        return image_defaults(profile)

    def data_notes(self, profile: dict[str, Any], target_notes: Any) -> list[dict[str, Any]]:
        return profile.get("warnings", [])

    def learns(self, profile: dict[str, Any]) -> str | None:
        from studio.core.text import as_text

        names = [c["name"] for c in profile.get("classes", [])]
        shown = ", ".join(map(as_text, names[:8])) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return (
            f"**Task:** image classification: the model learns to tell which of the "
            f"**{len(names)} classes** a picture shows ({shown})."
        )

    def blockers(self, spec: RunSpec) -> list[str]:
        return image_blockers(spec)

    def model_notes(self, spec: RunSpec) -> list[str]:
        return []

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        return estimate_image_time(spec, rows, image_size(spec, profile), on_gpu=on_gpu)

    def image_size(self, spec: RunSpec, profile: dict[str, Any]) -> int:
        """The picture size (px) training will use (the Train page's note beside the picture settings)."""
        return image_size(spec, profile)


# Rough guesses checked against runs from the Train page here (small CNN, 32 and 64 px, 36 and 98 pictures,
# 2 and 6 epochs, busy 2-core CPU: 8-10 s each): starting the worker and reading every picture once into
# the cache, then epochs of forward and backward passes at about this many GFLOPS (a GPU does far more).
IMAGE_STARTUP_SECONDS = 8.0
IMAGE_DECODE_SECONDS = 0.003
IMAGE_EPOCH_SECONDS = 0.5
CPU_TRAIN_GFLOPS = 15.0
GPU_TRAIN_GFLOPS = 2000.0


def image_size(spec: RunSpec, profile: dict[str, Any]) -> int:
    """The picture size (px) training will use: the spec's, or the automatic choice for the data."""
    if spec.image.size:
        return spec.image.size
    median = (profile.get("sizes") or {}).get("short_side_median")
    return auto_image_size(spec.architecture.name, spec.architecture.params, median)


def network_gflops(architecture: str, params: dict[str, Any], size: int) -> float:
    """Multiply-adds of one forward pass of one picture, in billions (a rough count)."""
    gflops_224 = ARCHITECTURES[architecture].gflops_224  # (catalogue networks: it grows with the pixels)
    if gflops_224 is not None:
        return gflops_224 * (size / 224) ** 2
    width, blocks = int(params.get("width", 32)), int(params.get("blocks", 3))
    total, channels_in = 0.0, 3
    for i in range(blocks):
        channels = width * 2**i
        total += (size / 2**i) ** 2 * channels_in * channels * 9
        channels_in = channels
    return total / 1e9


def estimate_image_time(spec: RunSpec, n_images: int, size: int, on_gpu: bool = False) -> forms.TimeEstimate:
    """A rough upper guess of an image run: startup and one read of every picture, then epochs of
    forward and backward passes (about 3 forward passes; 1 when only the last layer trains)."""
    train, _, _ = forms.split_rows(spec, n_images)
    params = spec.architecture.params
    passes = 1.2 if params.get("freeze_backbone") else 3.0
    work = network_gflops(spec.architecture.name, params, size) * passes * n_images
    per_epoch = IMAGE_EPOCH_SECONDS + work / (GPU_TRAIN_GFLOPS if on_gpu else CPU_TRAIN_GFLOPS)
    seconds = IMAGE_STARTUP_SECONDS + n_images * IMAGE_DECODE_SECONDS + spec.training.epochs * per_epoch
    stop = " Early stopping usually ends it sooner." if spec.early_stopping.enabled else ""
    text = (
        f"Rough guess for an idle machine: at most about {forms._duration(seconds)} "
        f"({spec.training.epochs:,} epochs over about {train:,} pictures of {size} × {size} px).{stop} "
        f"{forms.BUSY_NOTE}"
    )
    return forms.TimeEstimate(seconds=seconds, text=text)


def image_blockers(spec: RunSpec) -> list[str]:
    """Why a picture run with these settings would fail at once, in plain words (empty: it can start)."""
    from studio.core.pretrained import missing_weights_message, pretrainable, weights_available

    params = spec.architecture.params
    wants_weights = bool(params.get("pretrained")) and pretrainable(spec.architecture.name)
    if wants_weights and not weights_available(spec.architecture.name):
        return [missing_weights_message(spec.architecture.name)]
    if params.get("freeze_backbone") and not params.get("pretrained"):
        return [
            "'Train only the last layer' needs pretrained weights: tick 'Start from pretrained weights', or "
            "untick 'Train only the last layer' to train the whole network from scratch."
        ]
    return []


FORM = PictureForm()
DEFAULTS_SUIT = "pictures"
GALLERY_SIZE = 24
SHOWN_PICTURES = 60
PICTURES_PER_ROW = 3


def model_summary(info: dict[str, Any]) -> str:
    """The Predict page's line about a picture model: its classes and the size pictures are resized to."""
    classes = [str(c) for c in info.get("target", {}).get("classes") or []]
    size = (info.get("preprocessing") or {}).get("size")
    resized = f" Pictures are resized to {size} × {size} px." if size else ""
    return f"Tells which of **{len(classes)} classes** a picture shows: {rv.first_names(classes)}.{resized}"


PICTURE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "zip"]


@st.cache_data(ttl=300, show_spinner=False, max_entries=8)
def confusion(run_id: str) -> tuple[list[str], list[list[int]]] | None:
    from studio.app.images_view import confusion_matrix

    matrix = confusion_matrix(run_id)
    return None if matrix is None else (matrix.classes, matrix.counts)


@st.cache_data(ttl=300, show_spinner=False, max_entries=4)
def mistakes(run_id: str) -> dict:
    return rv.mistake_gallery(run_id, limit=GALLERY_SIZE)


def picture_results(job: jobs.Job) -> None:
    """The confusion matrix of the test pictures and a gallery of the ones the model got wrong."""
    st.subheader("Where the model goes wrong")
    if not job.mlflow_run_id:
        st.info("This run has no test results to show.")
        return
    with st.spinner("Reading the test results from MLflow…"):
        matrix = confusion(job.mlflow_run_id)
        gallery = mistakes(job.mlflow_run_id)
    if matrix is None:
        st.info("This run did not record its test results, so there is no confusion matrix to show.")
        return
    classes, counts = matrix
    st.caption(
        "The test pictures, which the model never saw while training: each row is the true class, each "
        "column what the model said. The diagonal holds the right answers; a dark cell off the diagonal is "
        "a pair of classes the model mixes up."
    )
    st.plotly_chart(
        charts.confusion_matrix_figure(classes, counts), key="confusion-matrix", config={"displaylogo": False}
    )
    total = gallery["total"]
    if not total:
        st.success("No mistakes: the model recognised every test picture.", icon=":material/check_circle:")
        return
    shown = len(gallery["pictures"])
    st.markdown(
        f"**{total} test picture{'s' if total != 1 else ''} the model got wrong**"
        + (f" (the {shown} it was surest about)" if shown < total else "")
        + (", most confidently wrong first:" if total > 1 else ":")
    )
    if gallery["pictures"]:
        st.image(gallery["pictures"], caption=[ui.as_text(c) for c in gallery["captions"]], width=128)
    if gallery["missing"]:
        st.caption(f"{gallery['missing']} of them cannot be shown: their data set was deleted since.")
    explain_view.saliency_gallery(job)
    st.caption(
        "Look for a pattern: pictures in the wrong folder, classes that look alike, or pictures unlike the "
        "rest. More (and more varied) pictures of those classes usually help most."
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


def picture_card(row: dict[str, Any], data: bytes, saliency: str | None = None) -> None:
    with st.container(border=True):
        picture, words = st.columns([1, 1], vertical_alignment="center")
        shown = saliency or small_picture(data)
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
                frame = predict_pictures(loaded_bundle(str(model), model.stat().st_mtime), pictures, names)
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
    readable = [i for i, row in enumerate(shown) if not row["error"]]
    trained_here = st.session_state.get("predict-model-source", "").startswith("A model trained")
    maps = explain_view.card_saliency(
        st.session_state.get("predict-model-job") if trained_here else None,
        [str(rv.save_upload(pictures[i], names[i])) for i in readable],
    )
    saliency = {readable[k]: path for k, path in (maps or {}).items()}
    for start in range(0, len(shown), PICTURES_PER_ROW):
        columns = st.columns(PICTURES_PER_ROW)
        for offset, row in enumerate(shown[start : start + PICTURES_PER_ROW]):
            with columns[offset]:
                picture_card(row, pictures[start + offset], saliency.get(start + offset))
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




run_results = picture_results
predict_inputs = picture_inputs
