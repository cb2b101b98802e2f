"""Turning a stored table into what the tabular DataModule trains on: which rows have a target, which
columns feed the model and how (from the profile's column kinds and warnings), and the checks that
refuse a target or a table that cannot train, in plain words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from studio.core.errors import TrainingError
from studio.core.runtime import _as_category_text
from studio.core.spec import RunSpec
from studio.core.tasks import task_info
from studio.modalities.tabular.profile import (
    MANY_CATEGORIES,
    heavy_tailed,
    identifier_reason,
    identifier_target_refusal,
    is_identifier,
    log_target,
    target_warnings,
)

IGNORED_KINDS = {"identifier", "text", "constant"}
DROP_WARNINGS = {"identifier", "constant", "leak"}


@dataclass
class FeaturePlan:
    numeric: list[str]
    categorical: list[str]
    datetime: list[str]
    ignored: dict[str, str]  # column -> why it is left out
    text: list[str] = field(default_factory=list)  # free-text columns (read only when ``read_text``)
    log_numeric: list[str] = field(default_factory=list)  # number columns read on a log scale
    log_target: bool = False  # a regression target learned on a log scale (``profile.log_target``)


def plan_features(
    frame: pd.DataFrame, profile: dict[str, Any], spec: RunSpec, read_text: bool = False
) -> FeaturePlan:
    """Which columns feed the model and how, from the profile's column kinds and warnings. With
    ``read_text`` (the text networks) free-text columns are inputs too, and the other columns may all be
    left out; without it they are left out."""
    kinds = {c["name"]: c["kind"] for c in profile.get("columns", [])}
    target = spec.data.target
    ignored: dict[str, str] = {}
    flagged = {
        w["column"]: w["code"]
        for w in profile.get("warnings", [])
        if w.get("code") in DROP_WARNINGS and w.get("column") and w["code"] != "leak"
    }
    leak = {w["column"] for w in target_warnings(frame, profile, target, spec.task) if w["code"] == "leak"}
    if spec.data.features is not None:
        missing = [c for c in spec.data.features if c not in frame.columns]
        if missing:
            raise TrainingError(f"Feature column(s) not in the data set: {', '.join(missing)}.")
        candidates = list(spec.data.features)
        explicit = True
    else:
        candidates = [c for c in frame.columns if c != target]
        explicit = False
    numeric, categorical, datetime, text = [], [], [], []
    for name in candidates:
        kind = kinds.get(name, "numeric" if pd.api.types.is_numeric_dtype(frame[name]) else "categorical")
        if read_text and kind == "text":
            text.append(name)
            continue
        if not explicit:
            if name in leak:
                ignored[name] = "it copies the target (it would leak the answer)"
                continue
            if kind == "categorical" and is_identifier(frame[name]):
                kind = "identifier"  # a profile stored before names counted as identifiers
            if kind == "identifier" or flagged.get(name) == "identifier":
                values = frame[name]
                ignored[name] = "it " + identifier_reason(int(values.nunique()), int(values.notna().sum()))
                continue
            if name in flagged:
                ignored[name] = "it is constant"
                continue
            if kind in IGNORED_KINDS:
                ignored[name] = f"it is {kind} (not a usable feature)"
                continue
        if frame[name].nunique(dropna=True) <= 1 and not explicit:
            ignored[name] = "it has a single value"
            continue
        if kind == "numeric":
            numeric.append(name)
        elif kind == "datetime":
            if spec.preprocessing.datetime_features:
                datetime.append(name)
            else:
                ignored[name] = "dates are switched off in the preprocessing settings"
        else:
            categorical.append(name)
    if read_text and not text:
        raise TrainingError(
            "The text networks need a column of free text among the feature columns, and none is there"
            + (f" (the feature columns: {', '.join(candidates[:10])})" if candidates else "")
            + "; pick the task 'classification' or 'regression' for a table without text."
        )
    if not (numeric or categorical or datetime or text):
        raise TrainingError(
            "No usable feature columns are left (all are identifiers, constant, free text or copies of the "
            "target); choose feature columns explicitly or add informative columns to the data."
        )
    columns = {c["name"]: c for c in profile.get("columns", [])}
    log_numeric = [name for name in numeric if _log_scaled(frame[name], columns.get(name))]
    return FeaturePlan(numeric, categorical, datetime, ignored, text, log_numeric, _log_target(frame, spec))


def _log_target(frame: pd.DataFrame, spec: RunSpec) -> bool:
    """Whether a regression learns its target on a log scale (the rule the Data page states,
    :func:`studio.modalities.tabular.profile.log_target`, unless the settings turn it off)."""
    if not spec.preprocessing.log_target or task_info(spec.task).classes:
        return False
    numbers = pd.to_numeric(frame[spec.data.target], errors="coerce")
    numbers = numbers.to_numpy(dtype="float64", na_value=np.nan)
    return int(pd.Series(numbers).nunique()) > MANY_CATEGORIES and log_target(numbers)


def _log_scaled(values: pd.Series, column: dict[str, Any] | None) -> bool:
    """Whether a number column is read on a log scale: as its profile says (the Data page's words), or for
    a profile stored before the studio did so, by the same rule on the column's values."""
    if column is not None and "log_scale" in column:
        return bool(column["log_scale"])
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return int(pd.Series(numbers).nunique()) > MANY_CATEGORIES and heavy_tailed(numbers)


def table_data_module(
    frame: pd.DataFrame,
    profile: dict[str, Any],
    spec: RunSpec,
    fold: int = 0,
    read_text: bool = False,
    text_inputs: Any = None,
) -> Any:
    """The tabular DataModule for ``spec``: rows without a target value left out, the target checked,
    the feature columns planned. Imports torch and Lightning.

    ``read_text`` plans free-text columns as inputs (``plan.text``), and ``text_inputs(plan)`` makes the
    function that turns rows into the text's network inputs (``extra_inputs`` of the DataModule)."""
    from lightning_modules.tabular.data import TabularDataModule

    target = spec.data.target
    if target not in frame.columns:
        raise TrainingError(
            f"The target column '{target}' is not in the data set; its columns are: "
            f"{', '.join(map(str, frame.columns[:30]))}."
        )
    has_target = frame[target].notna() & (_as_category_text(frame[target]).notna())
    dropped_rows = int((~has_target).sum())
    frame = frame.loc[has_target].reset_index(drop=True)
    if len(frame) < 10:
        raise TrainingError(
            f"Only {len(frame)} rows have a value in '{target}'; at least 10 are needed to train and test."
        )
    if task_info(spec.task).classes and (refusal := identifier_target_refusal(frame[target])):
        raise TrainingError(f"{refusal} Pick another target column.")
    plan = plan_features(frame, profile, spec, read_text)
    extra = text_inputs(plan) if text_inputs is not None else None
    return TabularDataModule(frame, spec, plan, dropped_rows, fold, extra)
