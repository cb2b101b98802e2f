"""What the Train page does differently for each kind of data, looked up once from the task
(``form_kind(task)``) instead of asking "is this a set of pictures?" in every section.

Each kind says: the settings a data set of it starts from, the notes on the data to show, what a task
with a fixed target learns (a caption), why a run would fail at once, and the time guess. Streamlit is
not imported here; the page draws what these return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from studio.app import forms
from studio.core.tasks import task_info

if TYPE_CHECKING:
    from studio.core.spec import RunSpec


class FormKind(Protocol):
    def starting_values(self, profile: dict[str, Any]) -> dict[str, Any]:
        """Settings (dotted paths) a data set of this kind starts from, e.g. no mirroring for digits."""

    def data_notes(self, profile: dict[str, Any], target_notes: Any) -> list[dict[str, Any]]:
        """The notes on the data to show before training (``target_notes()`` reads them for a target)."""

    def learns(self, profile: dict[str, Any]) -> str | None:
        """For a task whose target is fixed, what the model learns (Markdown of plain text), else None."""

    def blockers(self, spec: RunSpec) -> list[str]:
        """Why a run with these settings would fail at once, in plain words (empty: it can start)."""

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        """A rough upper guess of the training time."""


class TableForm:
    """Tables: the user picks the target; notes depend on it; the guess counts rows and columns."""

    def starting_values(self, profile: dict[str, Any]) -> dict[str, Any]:
        return {}

    def data_notes(self, profile: dict[str, Any], target_notes: Any) -> list[dict[str, Any]]:
        return target_notes()

    def learns(self, profile: dict[str, Any]) -> str | None:
        return None

    def blockers(self, spec: RunSpec) -> list[str]:
        return []

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        n_features = len(spec.data.features) if spec.data.features else n_columns - 1
        return forms.estimate_time(spec, rows, n_features, on_gpu=on_gpu)


class TextForm(TableForm):
    """Tables with text: as a table, and the time guess counts the words the network reads."""

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        return forms.estimate_text_time(spec, profile, rows, on_gpu=on_gpu)


def kind_views(kind: str) -> Any:
    """The data kind's parts of the pages (``studio/modalities/<kind>/views.py``, or the module its
    ``Modality.views`` names): ``FORM`` (a :class:`FormKind`), ``DEFAULTS_SUIT``, ``run_results(job)`` and
    ``predict_inputs(model_path, model_info)``."""
    import importlib

    from studio.modalities import modality

    found = modality(kind)
    return importlib.import_module(getattr(found, "views", None) or f"{type(found).__module__.rpartition('.')[0]}.views")


def form_kind(task: str) -> FormKind:
    return kind_views(task_info(task).kind).FORM
