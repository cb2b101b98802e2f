"""The table tasks (``classification``, ``regression``: a table in, a category or a number out) and the
table bundles' flavour, registered where the spec and the bundle code can see them (cheap: no torch)."""

from __future__ import annotations

from studio.bundle.layout import register_flavour
from studio.core.tasks import TaskInfo, register_data_kind, register_task
from studio.modalities import register_lazily
from studio.modalities.tabular.bundle import FLAVOUR, KIND

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
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.tabular.modality")
