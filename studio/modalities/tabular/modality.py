"""The tabular data kind: a table's rows in, a category or a number out (``classification``,
``regression``). Ingest and profile are ``ingest`` and ``profile`` here, the feature plan and the
DataModule factory ``prepare``; the Lightning code is ``lightning_modules.tabular`` and the network and
preprocessing shipped in bundles ``studio.core.runtime``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from studio import tracking
from studio.core.spec import RunSpec
from studio.modalities import register


@dataclass
class PreparedTable:
    data: Any

    def run_tags(self, precision: str) -> dict[str, str]:
        return {tracking.TAG_IGNORED_COLUMNS: ", ".join(self.data.plan.ignored) or "none"}

    def lightning_module(self, spec: RunSpec, steps_per_epoch: int, accumulate: int) -> Any:
        from lightning_modules.registry import TabularShape, build_network

        data = self.data
        shape = TabularShape(data.preprocessor.n_numeric, data.preprocessor.cardinalities, data.n_out)
        net = build_network(spec.architecture.name, spec.architecture.params, shape)
        return table_module(net, data, spec, steps_per_epoch, accumulate)

    def ensemble(self, spec: RunSpec, nets: list[Any]) -> Any:
        """The LightningModule of fold models averaged into one (they share this table's preprocessing):
        class probabilities averaged for a classifier, values for a regression."""
        from studio.core.runtime import FoldEnsemble

        combine = "probabilities" if self.data.head == "classification" else "values"
        return table_module(FoldEnsemble(nets, combine), self.data, spec, 1, 1)

    def after_test(self, run_id: str, spec: RunSpec, module: Any) -> None:
        return None

    def write_bundle(self, folder: Path, spec: RunSpec, module: Any, metrics: dict[str, float]) -> Path:
        from studio.modalities.tabular.bundle import write_tabular_bundle

        data = self.data
        return write_tabular_bundle(
            folder / "model.zip",
            spec=spec,
            preprocessing=data.preprocessor.state,
            target=data.target_state,
            network_config=dict(module.net.config),
            state_dict={k: v.detach().cpu() for k, v in module.net.state_dict().items()},
            sample_rows=data.frame.iloc[data.test_idx[:5]].drop(columns=[spec.data.target]),
            metrics=metrics,
        )

    def add_to_result(self, result: Any) -> None:
        result.ignored_columns = dict(self.data.plan.ignored)
        result.dropped_rows = self.data.dropped_rows


def table_module(net: Any, data: Any, spec: RunSpec, steps_per_epoch: int, accumulate: int) -> Any:
    """The LightningModule that trains ``net`` on a table's DataModule (tables, and tables with text)."""
    from lightning_modules.tabular.module import TabularLightningModule

    return TabularLightningModule(
        net,
        data.head,
        data.n_out,
        spec.optimizer,
        spec.scheduler,
        spec.early_stopping.metric,
        spec.training.epochs,
        target_mean=data.target_state.get("mean", 0.0),
        target_std=data.target_state.get("std", 1.0),
        target_log=bool(data.target_state.get("log_scale")),
        target_log_range=data.target_state.get("log_range"),
        target_smear=float(data.target_state.get("smear", 1.0)),
        batch_size=data.batch_size,
        steps_per_epoch=steps_per_epoch,
        gradient_clip=spec.training.gradient_clip,
        accumulate=accumulate,
    )


class TabularModality:
    name = "tabular"
    form_key_prefix = ""  # the Train form's widget keys: train__training__epochs
    search_batch_sizes = (16, 32, 64, 128, 256, 512)
    search_learning_rates = (1e-4, 1e-1)
    lr_find_steps = 100

    def search_dimensions(self, spec: RunSpec, networks: list[str] | None = None) -> list[Any]:
        from studio.modalities.tabular.search import dimensions

        return dimensions(spec, networks)

    def device_plan(self, plan: Any) -> Any:
        return plan

    folds = True
    ensembles = True  # 'use all my data': fold models averaged into one (PreparedTable.ensemble)
    fold_models_up_to = 5_000
    """'Use all my data' starts on for tables up to this many rows (:func:`studio.modalities.fold_models_by_default`):
    five fold models averaged beat one model on the tables of ``bench/quality.py`` (see the README's quality
    section): the samples of a few hundred rows, and (2026-12-06, the limit was 2,000) ames, 2,930 rows (R²
    0.9038 -> 0.9082 on split seeds 1-3; higher on all 8 seeds of the screen) and credit_data, 4,454 rows
    (accuracy 0.8194 -> 0.8343, ahead of the tuned logistic regression's 0.8263). Training takes several
    times as long, which is seconds to a minute or two at this size (split seed 1 on a 2-core CPU at load 2:
    credit_data 6.9 -> 18.3 s, ames 9.6 -> 39.8 s), and each prediction runs all five networks."""

    def prepare(
        self, spec: RunSpec, dataset: Any, table: pd.DataFrame, profile: dict[str, Any], fold: int = 0
    ) -> PreparedTable:
        from studio.modalities.tabular.ingest import out_of_range_to_missing
        from studio.modalities.tabular.prepare import table_data_module

        out_of_range_to_missing(table)  # a data set stored before ingest did this holds them still
        # validates target, task and features before a run exists
        return PreparedTable(table_data_module(table, profile, spec, fold))

    def predict_file(self, bundle_zip: Path, info: dict[str, Any], data: Path) -> pd.DataFrame:
        return predict_table_file(bundle_zip, info, data)

    def explain_model(self, *args: Any) -> Any:
        from studio.modalities.tabular.explain import explain_model

        return explain_model(*args)

    def explain_row(self, *args: Any) -> Any:
        from studio.modalities.tabular.explain import explain_row

        return explain_row(*args)

    def compress_model(self, *args: Any) -> Any:
        from studio.modalities.tabular.compress import compress_model

        return compress_model(*args)


def predict_table_file(bundle_zip: Path, info: dict[str, Any], data: Path) -> pd.DataFrame:
    """The table file's columns, then the bundle's predictions for its rows (a model whose inputs are a
    table's columns: tables, and tables with text)."""
    from studio.bundle.reader import load_bundle, require_shared_column
    from studio.modalities.tabular.ingest import read_table_file

    frame = read_table_file(data)
    require_shared_column([c["name"] for c in info["input_columns"]], frame.columns)
    with load_bundle(bundle_zip) as bundle:
        predictions = bundle.predict(frame)
    return frame.drop(columns=[c for c in predictions.columns if c in frame.columns]).join(predictions)


register(TabularModality())
