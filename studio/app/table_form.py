"""What the Train page asks of a kind of data (:class:`FormKind`), and the table's answers
(:class:`TableForm`), which kinds whose data are tables' rows share.

Each kind says: the settings a data set of it starts from, the notes on the data to show, what a task
with a fixed target learns (a caption), why a run would fail at once, and the time guess. Streamlit is
not imported here; the page draws what these return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from studio.app import forms

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

    def model_notes(self, spec: RunSpec) -> list[str]:
        """What to know about the model before training that does not stop it (e.g. what a download
        fetches), in plain words."""

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        """A rough upper guess of the training time."""


class TableForm:
    """Tables: the user picks the target; notes depend on it; the guess counts rows and columns."""

    task = "classification"
    """A task of this kind, for the rules that depend on the kind (all its tasks share them)."""
    network: str | None = None
    """The network the form starts from (None: the task's default)."""

    def starting_values(self, profile: dict[str, Any]) -> dict[str, Any]:
        """'Use all my data' starts ticked on a small data set (the CLI trains the same by default)."""
        from studio.modalities import fold_models_by_default

        rows = int(profile.get("n_rows") or 0)
        return {"data.use_all_data": fold_models_by_default(self.task, self.network, rows)}

    def target_defaults(
        self, profile: dict[str, Any], target: str | None, features: list[str] | None = None
    ) -> dict[str, tuple[Any, str]]:
        """Settings that start from the data once the target (and the feature columns: none chosen means
        all) is chosen, each with its reason in a few words: the table network's number embedding,
        periodic where a number input has a long right tail
        (:func:`studio.modalities.tabular.profile.number_embedding_default`; the CLI trains the same).
        The page applies those its network has."""
        from studio.modalities.tabular.profile import number_embedding_default

        return {
            "architecture.params.numeric_embedding": number_embedding_default(profile, target, features)
        }

    def data_notes(self, profile: dict[str, Any], target_notes: Any) -> list[dict[str, Any]]:
        return target_notes()

    def learns(self, profile: dict[str, Any]) -> str | None:
        return None

    def blockers(self, spec: RunSpec) -> list[str]:
        return []

    def model_notes(self, spec: RunSpec) -> list[str]:
        return []

    def time_guess(
        self, spec: RunSpec, profile: dict[str, Any], rows: int, n_columns: int, on_gpu: bool
    ) -> forms.TimeEstimate:
        n_features = len(spec.data.features) if spec.data.features else n_columns - 1
        return forms.estimate_time(spec, rows, n_features, on_gpu=on_gpu)
