"""The table tasks (``classification``, ``regression``: a table in, a category or a number out), their
networks in the catalogue and the table bundles' flavour, registered where the spec and the bundle code
can see them (cheap: no torch)."""

from __future__ import annotations

from studio.bundle.layout import register_flavour
from studio.core.spec import ArchitectureInfo, LinearParams, MLPParams, register_architecture
from studio.core.tasks import TaskInfo, register_data_kind, register_task
from studio.modalities import register_lazily
from studio.modalities.tabular.bundle import FLAVOUR, KIND

TASKS = ("classification", "regression")
"""The tasks of a table (the table networks train these)."""

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
        "regression", KIND, "Regression", False, "tabular", "mlp", choice="Regression (predict a number)"
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
