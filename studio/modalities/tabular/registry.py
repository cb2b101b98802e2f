"""The table tasks (``classification``, ``regression``: a table in, a category or a number out), their
networks in the catalogue and the table bundles' flavour, registered where the spec and the bundle code
can see them (cheap: no torch)."""

from __future__ import annotations

from typing import Any

from studio.bundle.layout import register_flavour
from studio.core.spec import ArchitectureInfo, LinearParams, MLPParams, register_architecture
from studio.core.tasks import TaskInfo, register_data_kind, register_task
from studio.modalities import register_lazily
from studio.modalities.tabular.bundle import FLAVOUR, KIND

TASKS = ("classification", "regression")
"""The tasks of a table (the table networks train these)."""

REGRESSION_SPEC_DEFAULTS: dict[str, dict[str, Any]] = {"early_stopping": {"metric": "val/rmse"}}
"""A regression keeps the epoch with the smallest error in the target's own units (and stops, and lowers
its learning rate, by it), not the smallest validation loss: with a money-like target learned on a log
scale the loss weighs a house of 50,000 as much as one of 500,000 (a relative error), while the R² a user
reads (and the references of ``bench/quality.py`` score) weighs the expensive ones most. The root mean
squared error picks the same epoch as R² on the same rows (R² = 1 − MSE / their variance), and has a value
even when every validation row has the same target. For a target on its own scale it picks the same epoch
as the loss (the loss is the mean squared error of the scaled target). Measured in the README's quality
section (issue 20)."""

register_data_kind("tabular", "is a table", "a table (a CSV file)")
register_task(
    TaskInfo(
        "classification",
        KIND,
        "Classification",
        True,
        "tabular",
        "mlp",
        choice="Classification (predict a category)",
    )
)
register_task(
    TaskInfo(
        "regression",
        KIND,
        "Regression",
        False,
        "tabular",
        "mlp",
        spec_defaults=REGRESSION_SPEC_DEFAULTS,
        choice="Regression (predict a number)",
    )
)
register_architecture(
    ArchitectureInfo(
        name="mlp",
        title="Neural network (MLP)",
        description="A multi-layer perceptron with embeddings for categories; the default for tables.",
        tasks=TASKS,
        params_model=MLPParams,
    )
)
register_architecture(
    ArchitectureInfo(
        name="linear",
        title="Linear model",
        description="Logistic or linear regression: quick, hard to overfit, a good baseline to beat.",
        tasks=TASKS,
        params_model=LinearParams,
    )
)
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.tabular.modality")
