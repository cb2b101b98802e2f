"""The text kind's parts of the pages: its Train-form behaviour, the run page's worst-misclassified
texts, and the Predict page's typed text (or rows). Imported by the pages only (Streamlit)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from studio import jobs
from studio.app import charts, explain_view, forms, ui
from studio.app import runs_view as rv
from studio.app.predict_view import WARNING_COLUMN, loaded_bundle, row_inputs
from studio.app.table_form import TableForm
from studio.core.errors import StudioError
from studio.core.spec import RunSpec

# Text: the bag of words' step updates its whole table of word vectors (the optimiser's work grows with
# buckets x vector size); a pretrained transformer's work grows with the tokens it reads: about 6 x its
# weights in multiply-adds per token for a forward and backward pass, at this many a second on a CPU core
# pair (a GPU does far more).
TEXT_STEP_SECONDS_PER_MILLION_WEIGHTS = 0.0025
TRANSFORMER_WEIGHTS = 22.7e6
CPU_FLOPS = 2.0e10
GPU_FLOPS = 2.0e12
WORDPIECES_PER_WORD = 1.4


def text_tokens_per_row(spec: RunSpec, profile: dict[str, Any]) -> float:
    """How many tokens the network reads per row: the text columns' words (and word groups for the bag
    of words, word pieces for a pretrained network), cut at the network's length."""
    columns = [c for c in profile.get("columns", []) if c["kind"] == "text" and c["name"] != spec.data.target]
    if spec.data.features is not None:
        columns = [c for c in columns if c["name"] in spec.data.features]
    words = sum(float(c.get("stats", {}).get("words_mean", 0.0)) for c in columns)
    params = spec.architecture.params
    if "max_tokens" in params:
        return min(words * int(params.get("word_ngrams", 1)) * (4 if params.get("char_ngrams") else 1), params["max_tokens"])
    return min(words * WORDPIECES_PER_WORD + 2, params.get("max_length", 128))


def estimate_text_time(spec: RunSpec, profile: dict[str, Any], n_rows: int, on_gpu: bool = False) -> forms.TimeEstimate:
    """A rough upper guess of a text run's time: startup + epochs x (steps x the optimiser's work + the
    tokens the network reads), times the fold models 'use all my data' trains one after another."""
    train, _, _ = forms.split_rows(spec, n_rows)
    batch = forms.effective_batch_size(spec, train)
    steps = math.ceil(train / batch) if train else 0
    tokens = text_tokens_per_row(spec, profile)
    params = spec.architecture.params
    if "buckets" in params:
        weights = params["buckets"] * params["embedding_dim"] / 1e6
        per_epoch = forms.EPOCH_SECONDS + steps * (forms.STEP_SECONDS + weights * TEXT_STEP_SECONDS_PER_MILLION_WEIGHTS)
    else:
        flops = 6 * TRANSFORMER_WEIGHTS * tokens * train
        per_epoch = forms.EPOCH_SECONDS + steps * forms.STEP_SECONDS + flops / (GPU_FLOPS if on_gpu else CPU_FLOPS)
    models, each = forms.fold_models(spec)
    seconds = forms.STARTUP_SECONDS + models * spec.training.epochs * per_epoch
    stop = " Early stopping usually ends it sooner." if spec.early_stopping.enabled else ""
    text = (
        f"Rough guess for an idle machine: at most about {forms._duration(seconds)} ({spec.training.epochs:,} epochs "
        f"over about {train:,} rows of about {tokens:,.0f} tokens each{each}).{stop} {forms.BUSY_NOTE}"
    )
    return forms.TimeEstimate(seconds=seconds, text=text)



class TextForm(TableForm):
    """Tables with text: as a table, and the time guess counts the words the network reads."""

    task = "text_classification"

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        return estimate_text_time(spec, profile, rows, on_gpu=on_gpu)


FORM = TextForm()
DEFAULTS_SUIT = "texts"


@st.cache_data(ttl=300, show_spinner=False, max_entries=4)
def text_mistakes(run_id: str) -> dict | None:
    from studio.app.text_view import text_mistakes as logged

    return logged(run_id)


def text_results(job: jobs.Job) -> None:
    """The test rows the model got most wrong, with their texts, truth and prediction."""
    from studio.app.text_view import mistakes_frame

    st.subheader("Where the model goes wrong")
    logged = text_mistakes(job.mlflow_run_id) if job.mlflow_run_id else None
    if not logged:
        st.info("This run did not record its test rows, so there are no mistakes to show.")
        return
    frame = mistakes_frame(logged)
    if frame.empty:
        st.success("No mistakes: the model got every test row right.", icon=":material/check_circle:")
        return
    classes = logged.get("task") == "classification"
    st.caption(
        (
            f"The {len(frame)} test rows (of {logged['test_rows']:,}, never seen in training) the model got "
            "wrong, the surest mistakes first: reading them shows what it has not understood."
        )
        if classes
        else f"The {len(frame)} test rows with the largest errors (of {logged['test_rows']:,}), largest first."
    )
    st.dataframe(frame, hide_index=True, key="text-mistakes")
    explain_view.mistake_words(job)




def text_inputs(model_path: Path, model_info: dict[str, Any]) -> None:
    """A text model: type a text (the other inputs may stay empty) and see what the model says, or give
    rows with texts as for a table."""
    texts = [c["name"] for c in model_info["input_columns"] if c.get("kind") == "text"]
    others = [c["name"] for c in model_info["input_columns"] if c.get("kind") != "text"]
    st.subheader("2. Type a text")
    typed = {
        name: st.text_area(ui.as_text(name), key=f"predict-text-{name}", height=100, placeholder="Type or paste a text")
        for name in texts
    }
    if others:
        st.caption(
            f"The model also reads {', '.join(map(ui.as_text, others))}; here they are left empty (its "
            "prediction then leans on the text alone). Give whole rows below to use them."
        )
    if st.button("Predict this text", key="predict-text-run", type="primary", icon=":material/online_prediction:"):
        if not any(value.strip() for value in typed.values()):
            st.info("Type a text first.", icon=":material/edit:")
        else:
            try:
                result = rv.predict_rows(loaded_bundle(str(model_path), model_path.stat().st_mtime), pd.DataFrame([typed]))
            except StudioError as err:
                ui.show_error(err)
            else:
                typed_answer(result, model_info)
    trained_here = st.session_state.get("predict-model-source", "").startswith("A model trained")
    explain_view.text_explanation(st.session_state.get("predict-model-job") if trained_here else None, typed)
    st.subheader("3. Or give many rows")
    row_inputs(model_path, model_info, numbered=False)


def typed_answer(result: pd.DataFrame, info: dict[str, Any]) -> None:
    """The prediction for one typed text: the answer, and for classes how sure the model is of each."""
    target = info["target"]
    answer = result[f"predicted_{target['name']}"].iloc[0]
    st.markdown(f"**{ui.as_text(target['name'])}:** {ui.as_text(answer)}")
    classes = target.get("classes")
    if classes:
        shares = [float(result[f"probability_{c}"].iloc[0]) for c in classes]
        st.plotly_chart(
            charts.class_counts_figure([str(c) for c in classes], shares, height=200, unit="probability"),
            key="predict-text-probabilities",
            config={"displaylogo": False},
        )
    warning = result.get(WARNING_COLUMN)
    if warning is not None and str(warning.iloc[0] or ""):
        st.warning(ui.as_text(str(warning.iloc[0])), icon=":material/warning:")



run_results = text_results
predict_inputs = text_inputs
