"""The table kind's parts of the pages: its Train-form behaviour, nothing more on the run page, and
rows (a CSV or a stored data set) on the Predict page. Imported by the pages only (Streamlit)."""

from __future__ import annotations

from typing import Any

from studio.app.predict_view import row_inputs
from studio.app.table_form import TableForm

FORM = TableForm()
DEFAULTS_SUIT = "tables"
predict_inputs = row_inputs


def run_results(job: Any) -> None:
    """A table's run page shows its scores and curves; nothing of its own beyond them."""
