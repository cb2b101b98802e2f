"""The table kind's parts of the pages: its Train-form behaviour, nothing more on the run page, and
rows (a CSV or a stored data set) on the Predict page. Imported by the pages only (Streamlit)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from studio.app import explain_view
from studio.app.predict_view import row_inputs
from studio.app.table_form import TableForm

FORM = TableForm()
DEFAULTS_SUIT = "tables"
TRAINED_HERE_KEY = "predict-model-job"  # the Predict page's choice of a model trained here


def predict_inputs(model_path: Any, model_info: dict[str, Any], numbered: bool = True) -> None:
    """The rows, their predictions, then "why?" for one of them."""
    result = row_inputs(model_path, model_info, numbered)
    if result is not None:
        trained_here = st.session_state.get("predict-model-source", "").startswith("A model trained")
        explain_view.row_explanation(st.session_state.get(TRAINED_HERE_KEY) if trained_here else None, result)


def run_results(job: Any) -> None:
    """A table's run page: what drives the model's predictions (permutation importance, as a job)."""
    explain_view.model_explanation(job)
