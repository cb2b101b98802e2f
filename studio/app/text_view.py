"""What the run page shows of a text run: the test rows the model got most wrong, with their texts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from studio.app.images_view import _download_json
from studio.tracking import TEXT_PREDICTIONS_ARTIFACT


def text_mistakes(run_id: str) -> dict[str, Any] | None:
    """The logged worst test rows (``None`` for a run that logged none: an older or failed run)."""
    return _download_json(run_id, TEXT_PREDICTIONS_ARTIFACT)


def mistakes_frame(logged: dict[str, Any]) -> pd.DataFrame:
    """One row per mistake: its text columns, the true answer, the model's, and how sure it was."""
    rows = []
    for row in logged.get("rows", []):
        entry = dict(row["texts"])
        entry["True answer"] = row["label"]
        entry["Model said"] = row["predicted"]
        if "probability" in row:
            entry["Its probability"] = row["probability"]
            entry["Probability of the true answer"] = row["probability_of_label"]
        else:
            entry["Error"] = row["error"]
        rows.append(entry)
    return pd.DataFrame(rows)
