"""The Predict page's parts for models that read a table's rows (tables, and tables with text): the
opened model kept between reruns, where the rows come from, and the predictions with their download.
The data kinds' own Predict sections (``studio/modalities/<kind>/views.py``) use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from studio.app import runs_view as rv
from studio.app import ui
from studio.core.errors import StudioError
from studio.core.text import counted

UPLOAD_ROWS = "Upload a CSV file"
STORED_ROWS = "A stored data set"
SHOWN_ROWS = 1000
WARNING_COLUMN = "prediction_warning"  # bundle_runtime.WARNING_COLUMN, without importing torch here


@st.cache_resource(max_entries=4, show_spinner=False)
def loaded_bundle(path: str, mtime: float) -> Any:
    """The opened model, kept between reruns (keyed by file and its modification time)."""
    from studio.bundle import load_bundle  # imports torch and mlflow: only when predicting

    return load_bundle(path)


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


def predict_section(
    model: Path, info: dict[str, Any], frame: pd.DataFrame, rows_key: str
) -> pd.DataFrame | None:
    """The Predict button and the predictions (returned once made for these rows, else None)."""
    missing = rv.missing_inputs(info, frame.columns)
    inputs = len(info.get("input_columns", []))
    if missing and len(missing) == inputs:
        st.error(
            "None of these rows' columns is an input of the model (names must match exactly). "
            f"It expects: {', '.join(map(ui.as_text, missing))}."
        )
        return None
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
                return None
            except Exception as err:  # the rows broke the model in a way the bundle does not foresee
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                st.error(
                    f"The model could not predict these rows ({ui.as_text(first)}). Check that they look like the "
                    "training data."
                )
                return None
        st.session_state["predictions"] = (signature, result)
    saved = st.session_state.get("predictions")
    if not saved or saved[0] != signature:
        st.caption("Press **Predict** to add the model's predictions to every row.")
        return None
    result = saved[1]
    st.subheader("Predictions")
    shown = "" if len(result) <= SHOWN_ROWS else f" (the first {SHOWN_ROWS} are shown; the download has all)"
    st.caption(
        f"{counted(len(result), 'row')}{shown}. The first columns are the model's answers"
        + (
            "; `probability_…` columns say how sure it is of each class."
            if info.get("target", {}).get("classes")
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
    return result


def row_inputs(model_path: Path, model_info: dict[str, Any], numbered: bool = True) -> pd.DataFrame | None:
    """Where the rows come from and their predictions (returned once made)."""
    if numbered:
        st.subheader("2. Give the rows to predict")
    try:
        rows = choose_rows(model_info)
    except StudioError as err:
        ui.show_error(err)
        rows = None
    if rows is not None:
        st.subheader("3. Predict" if numbered else "Predict the rows")
        return predict_section(model_path, model_info, *rows)
    return None


