"""The data-kind seam: what the engine, the bundle reader and the CLI ask of a kind of data.

A data kind (``tabular``, ``image``; text would be next) is one package under ``studio/modalities/``
holding its ingest and profile, the preparation that turns a stored data set into a Lightning
DataModule, the choice of LightningModule and network (their code lives in ``lightning_modules/<kind>/``),
its bundle flavour and its prediction. The engine (:func:`studio.engine.training.train`) looks the kind
up once, ``modality_for(spec.task)``, and calls only what is declared here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from studio.core.spec import RunSpec


@runtime_checkable
class Prepared(Protocol):
    """One attempt's data and model recipe (a retry after running out of memory prepares again)."""

    data: Any
    """The LightningDataModule, with ``sizes`` (rows per split), ``batch_size`` and ``steps_per_epoch``,
    and ``targets(split)``: every row's class index or number (in the target's units) in a split, from
    which the engine scores the trivial guess on the test rows (:mod:`studio.core.quality`; a kind
    without it gets no verdict)."""

    def run_tags(self, precision: str) -> dict[str, str]:
        """MLflow tags saying what this kind did with the data (e.g. columns left out, picture size)."""

    def lightning_module(self, spec: RunSpec, steps_per_epoch: int, accumulate: int) -> Any:
        """The LightningModule to fit, with ``net`` (the network the bundle keeps) and ``test_results``."""

    def after_test(self, run_id: str, spec: RunSpec, module: Any) -> None:
        """Log what the run page shows beyond the curves (e.g. the pictures' confusion matrix)."""

    def write_bundle(self, folder: Path, spec: RunSpec, module: Any, metrics: dict[str, float]) -> Path:
        """Write the model bundle (a zip under ``folder``) that predicts without the studio."""

    def add_to_result(self, result: Any) -> None:
        """Fill in this kind's parts of the :class:`~studio.engine.training.TrainResult`."""

    # Optional: ``notes() -> list[str]``, sentences the run page shows with the run's other notes (what
    # the kind did to the data that the user should know, e.g. how many texts were cut).


@runtime_checkable
class Modality(Protocol):
    name: str
    """The kind's name: ``TaskInfo.kind``, the MLflow tag ``studio.kind`` and the bundle's ``kind``."""

    def device_plan(self, plan: Any) -> Any:
        """The device plan this kind trains with (pictures: 32-bit on a CPU), from the spec's."""

    def prepare(self, spec: RunSpec, dataset: Any, table: pd.DataFrame, profile: dict[str, Any]) -> Prepared:
        """Check the data (and the network's weights) and build the DataModule, before a run exists.
        ``dataset`` is the stored data set's record (id, folder), ``table`` its rows and ``profile`` its
        profile, loaded by the engine (a kind never reads the data set store itself).
        Raises :class:`~studio.core.errors.StudioError` with a plain sentence for what the user can fix.

        A kind whose class says ``folds = True`` (tables) also takes ``fold=N``: the same split with the
        ``N``-th next block of non-test rows as validation rows, for a search's cross-validation
        (:func:`studio.engine.training.fold_scores`)."""

    def predict_file(self, bundle_zip: Path, info: dict[str, Any], data: Path) -> pd.DataFrame:
        """Predictions of the bundle at ``bundle_zip`` (its checked info: ``info``) for a file, folder or
        zip of this kind's inputs: the inputs' columns, then the prediction columns. The data is checked
        before the bundle is loaded."""

    # Optional, for the automatic search: ``search_dimensions(spec, networks) -> [Dimension]`` (its
    # networks and their settings, from ``studio.core.search_dims``), ``search_batch_sizes``,
    # ``search_learning_rates`` (low, high), ``search_optimizers`` (the optimisers tried; one: not
    # searched), ``lr_find_steps`` (mini-batches of a range test) and ``lr_find_refusal`` (the sentence
    # when the range test cannot run on the kind's batches). A kind
    # without them cannot be searched (said in one sentence).
