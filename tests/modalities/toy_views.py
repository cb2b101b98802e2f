"""The toy kind's parts of the pages (its ``Modality.views``): the Train form as for a table, a run-page
section of its own (the sum it learnt), and rows to predict as for a table. Only the pages import it."""

from __future__ import annotations

from typing import Any

import streamlit as st

from studio.app.predict_view import row_inputs
from studio.app.table_form import TableForm

FORM = TableForm()
DEFAULTS_SUIT = "toy sums"
predict_inputs = row_inputs


def run_results(job: Any) -> None:
    """The sum the toy learnt, read from its bundle."""
    from studio.bundle import read_bundle_info

    toy = read_bundle_info(job.bundle_path)["toy"]
    weights = [w / s * toy["target_std"] for w, s in zip(toy["weight"], toy["std"], strict=True)]
    terms = " ".join(f"{w:+.2f}·{c}" for w, c in zip(weights, toy["columns"], strict=True))
    st.subheader("What the toy learnt")
    st.markdown(f"{job.spec.data.target} ≈ {terms} + constant")
