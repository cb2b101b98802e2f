"""The text tasks (``text_classification``, ``text_regression``: a table with free-text columns in) with
their spec defaults, their networks in the catalogue and the text bundles' flavour, registered where the
spec and the bundle code can see them (cheap: no torch)."""

from __future__ import annotations

from typing import Any

from studio.bundle.layout import register_flavour
from studio.core.spec import ArchitectureInfo, BagOfWordsParams, PretrainedTextParams, register_architecture
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

TASKS = ("text_classification", "text_regression")
"""The tasks of a table with text columns (the text networks train these)."""

for _name, _title, _classes, _predicts in (
    (TASKS[0], "Text classification", True, "a category"),
    (TASKS[1], "Text regression", False, "a number"),
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
register_architecture(
    ArchitectureInfo(
        name="bag_of_words",
        title="Bag of words",
        description="Learns a vector per word and word pair and pools them over each text, beside the "
        "table's other columns: trains in seconds on a CPU; the default for text.",
        tasks=TASKS,
        params_model=BagOfWordsParams,
        suggested_learning_rate=0.002,
    )
)
register_architecture(
    ArchitectureInfo(
        name="minilm_l6",
        title="Pretrained MiniLM",
        description="A 22-million-weight language network (all-MiniLM-L6-v2) that already knows English, "
        "fine-tuned on your texts: better on small or subtle data, about 100× slower than a bag of words "
        "(a GPU helps).",
        tasks=TASKS,
        params_model=PretrainedTextParams,
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        suggested_learning_rate=5e-5,
        no_fold_models="'Use all my data' works with the bag of words, not a pretrained network: it would "
        "train {folds} copies of a 22-million-weight network (MiniLM's size) and run all of them for every "
        "prediction; turn the switch off or choose the bag of words",
    )
)
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.text.modality")
