"""The text tasks (``text_classification``, ``text_regression``: a table with free-text columns in) with
their spec defaults, and the text bundles' flavour, registered where the spec and the bundle code can see
them (cheap: no torch)."""

from __future__ import annotations

from typing import Any

from studio.bundle.layout import register_flavour
from studio.core.tasks import TaskInfo, register_task
from studio.modalities import register_lazily
from studio.modalities.text.bundle import FLAVOUR, KIND

TEXT_SPEC_DEFAULTS: dict[str, dict[str, Any]] = {
    "early_stopping": {"patience": 5},
    "scheduler": {"plateau_patience": 2},
}
"""Text networks learn their words within a few epochs and then overfit: on the real sets of
``bench/text_quality.py`` the bag of words' best validation loss came at epoch 2 to 5 and rose steadily
after it, so 15 epochs of patience (the tables' default) only spent time (two thirds of each run)."""

for _name, _title, _classes, _predicts in (
    ("text_classification", "Text classification", True, "a category"),
    ("text_regression", "Text regression", False, "a number"),
):
    register_task(
        TaskInfo(
            _name,
            KIND,
            _title,
            _classes,
            "tabular",
            "bag_of_words",
            spec_defaults=TEXT_SPEC_DEFAULTS,
            choice=f"{_title} (read the text columns, predict {_predicts})",
        )
    )
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.text.modality")
