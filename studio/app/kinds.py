"""Each kind of data's parts of the pages, looked up once from the kind (``kind_views(kind)``,
``form_kind(task)``) instead of asking "is this a set of pictures?" in every section: a kind's ``views``
module (``studio/modalities/<kind>/views.py``) holds them."""

from __future__ import annotations

from typing import Any

from studio.app.table_form import FormKind
from studio.core.tasks import task_info


def kind_views(kind: str) -> Any:
    """The data kind's parts of the pages (``studio/modalities/<kind>/views.py``, or the module its
    ``Modality.views`` names): ``FORM`` (a :class:`FormKind`), ``DEFAULTS_SUIT``, ``run_results(job)`` and
    ``predict_inputs(model_path, model_info)``; optionally ``more_downloads(job, bundle, file_name)`` (the
    run page's other downloads beside the model, e.g. a language model's merged version)."""
    import importlib

    from studio.modalities import modality

    found = modality(kind)
    return importlib.import_module(getattr(found, "views", None) or f"{type(found).__module__.rpartition('.')[0]}.views")


def form_kind(task: str) -> FormKind:
    return kind_views(task_info(task).kind).FORM


def kind_can(kind: str, method: str) -> bool:
    """Whether the data kind supplies ``method`` (e.g. ``compress_model``: a small version)."""
    from studio.modalities import modality

    return callable(getattr(modality(kind), method, None))
