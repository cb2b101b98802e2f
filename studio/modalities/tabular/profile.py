"""Profile a table: what kind each column is, what is missing, which column is probably the target,
and warnings in plain words with what the studio will do about each.

The profile is a JSON-serialisable dict (saved as ``profile.json``); see :func:`profile_table`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from studio.core.text import counted

KINDS = ("numeric", "categorical", "boolean", "datetime", "text", "identifier")
# Whole column names (lower case, letters and digits only) that name the answer, most telling first.
TARGET_NAMES = (
    "target",
    "label",
    "labels",
    "class",
    "y",
    "outcome",
    "diagnosis",
    "species",
    "variety",
    "survived",
    "churn",
    "churned",
    "exited",
    "attrition",
    "default",
    "fraud",
    "isfraud",
    "income",
    "salary",
    "price",
    "saleprice",
    "quality",
    "mpg",
    "milespergallon",
    "rating",
    "grade",
    "result",
    "response",
    "charges",
    "medv",
)
# Words inside a longer column name that name the answer ("SalePrice", "wine_quality", "Miles_per_Gallon");
# "class" and "y" are not among them: "MSSubClass" and "pos_y" are inputs.
TARGET_WORDS = (
    "target",
    "label",
    "outcome",
    "diagnosis",
    "species",
    "survived",
    "churn",
    "fraud",
    "income",
    "salary",
    "price",
    "quality",
    "mpg",
    "gallon",
)
# Words of a column name that say it holds a date or a part of one: never suggested as the target.
DATE_WORDS = frozenset(
    {"year", "yr", "month", "day", "date", "datetime", "timestamp", "week", "quarter", "hour", "minute"}
)
TARGET_WARNING_CODES = ("target_missing", "identifier_target", "rare_class", "imbalance", "leak")
MAX_CLASSES_FOR_INTEGER_TARGET = 20
RARE_CLASS_ROWS = 5
IMBALANCE_RATIO = 10
HIGH_MISSING_SHARE = 0.5
TOP_VALUES = 10
# A text column with a different value in at least this share of its rows (and at least
# IDENTIFIER_MIN_ROWS rows) is a name or an ID: a model cannot learn from values it sees once.
IDENTIFIER_SHARE = 0.7
IDENTIFIER_MIN_ROWS = 20
FEATURES_TITLE = "Feature columns"  # the Train page's pick list of input columns (RunSpec data.features)

_ID_NAME = re.compile(r"(?:^|[_\s.-])(?:id|uuid|guid)$|^(?:index|idx|row_?id|row_?number|record_?id)$", re.I)
_CAMEL_ID = re.compile(r"[a-z0-9](?:Id|ID)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_OTHER_DATE = re.compile(
    r"^(?:\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2})|\d{4}/\d{1,2}/\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"
)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_TIME = r"(?:[ T,]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[ap]\.?m\.?)?(?:\s*(?:Z|UTC|[+-]\d{2}:?\d{2}))?)?"
_WORDY_DATE = re.compile(
    r"^(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?(?:"
    rf"\d{{1,2}}(?:st|nd|rd|th)?[\s-]+{_MONTH},?[\s-]+\d{{2,4}}"  # 12 Jun 1998, 12-Jun-98
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # Jun 12 1998, June 12th, 1998
    rf"|{_MONTH}[\s-]+\d{{4}}"  # Jun 1998, Mar-2018
    rf"){_TIME}$",
    re.I,
)
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
DATE_SHARE = 0.9
"""A text column holds dates when at least this share of its (sampled) values are written like dates
and read as dates."""
LOG_SPAN = 100.0
"""A number column is read on a log scale when its large values (99th percentile) are at least this many
times its small positive ones (5th percentile), it has no negative value and a long right tail."""
LOG_SKEW = 2.0
TARGET_LOG_SKEW = 1.0
"""A regression target is learned on a log scale when it is never negative, its skewness is above this
and the log at least halves it (money such as prices and salaries; not a roughly symmetric number)."""
RARE_CATEGORY_ROWS = 5
"""The training settings' default (``preprocessing.rare_category_rows``), for the Data page's words."""
MANY_CATEGORIES = 20
"""A category column with more different values than this is described on the Data page (learned
vectors, rare values pooled)."""
_BOOLEAN_PAIRS = ({"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"})
_WORD = re.compile(r"[^\W\d_]+")
"""A word as the text rule counts them: letters only ("INV-00172" holds one, "inv")."""
TEXT_MIN_WORDS = 2.0
TEXT_REPEATED_SHARE = 0.25
TEXT_LOWER_SHARE = 0.4
TEXT_MIN_LOWER_SHARE = 0.3
"""Free text is mostly lower-case words; titles and names are capitalised ("The Land Girls", "First Love,
Last Rites": a share of 0.18 over a real table of 3,200 films, against 0.88 for product reviews and 0.72
for tweets)."""
TEXT_LONG_WORDS = 8.0
TEXT_STATS_ROWS = 100_000
"""Word counts and frequent words of a text column are read from at most this many rows."""
TEXT_LENGTH_BINS = 20
# Words too common to say anything about a column (left out of its most frequent words), and the mark of
# sentences: names, titles and codes rarely hold one. A few of other common languages' are among them.
_STOP_WORDS = (
    "a about after an and are as at be been but by can could did do does for from had has have he her his "
    "how i if in into is it its me my no not of on or our out she so than that the their them then there "
    "they this to too up us very was we were what when which who why will with would you your "
    "de la le les des du et est un une pour pas que qui dans sur avec très el los las y es en muy por con "
    "una der die das und ist nicht ein eine zu mit sehr auf für não é um uma com"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())
TEXT_FUNCTION_SHARE = 0.3
"""A column is text when at least this share of its values hold a common little word (or they are long)."""

PROFILE_THREADS = 2
DISTINCT_SAMPLE_ROWS = 100_000
"""Fractional-number columns longer than this count their different values on evenly spaced rows
first; a count this large is then shown as a lower bound ("at least …")."""
EXACT_DISTINCT_BELOW = 1_000
"""A sampled count below this is counted again on every row: the studio's choices (constant, few
values, a category-like number) look at small counts, so those are always exact."""


def profile_table(df: pd.DataFrame) -> dict[str, Any]:
    """Profile every column, suggest a target and task, and collect warnings (for the suggested target).

    Column renames made while reading (``df.attrs["renamed_columns"]``) become a ``renamed_columns``
    warning.
    """
    n_rows = len(df)
    with ThreadPoolExecutor(max_workers=PROFILE_THREADS) as pool:  # a column at a time on each core
        columns = list(pool.map(lambda name: _profile_column(df[name], str(name), n_rows), df.columns))
    duplicate_rows = duplicate_row_count(df)
    profile: dict[str, Any] = {
        "n_rows": n_rows,
        "n_cols": len(df.columns),
        "duplicate_rows": duplicate_rows,
        "columns": columns,
        "suggested_target": None,
        "suggested_task": None,
        "warnings": [],
    }
    target = suggest_target(profile)
    profile["suggested_target"] = target
    profile["suggested_task"] = suggest_task(profile, target) if target is not None else None
    profile["warnings"] = _table_warnings(profile, list(df.attrs.get("renamed_columns") or []))
    profile["warnings"] += _out_of_range_warnings(list(df.attrs.get("out_of_range_values") or []))
    profile["warnings"] += _column_warnings(profile, target)
    if target is not None:
        profile["warnings"] += target_warnings(df, profile, target, profile["suggested_task"])
    return profile


def duplicate_row_count(df: pd.DataFrame, columns_at_a_time: int = 4) -> int:
    """How many rows repeat an earlier row exactly (every column), counted exactly but cheaply.

    Two equal rows are equal in every group of columns, so the rows that repeat another one in the
    first few columns are kept and the next columns are checked on those alone; the few left at the end
    are compared on every column. A table without repeats is ruled out after its first few columns
    (one tenth of hashing every cell)."""
    rows = df
    names = list(df.columns)
    for start in range(0, len(names), columns_at_a_time):
        if len(rows) < 2:
            return 0
        part = rows[names[start : start + columns_at_a_time]]
        rows = rows[pd.util.hash_pandas_object(part, index=False).duplicated(keep=False).to_numpy()]
    return int(pd.util.hash_pandas_object(rows, index=False).duplicated().sum()) if len(rows) else 0


def column_profile(profile: dict[str, Any], name: str) -> dict[str, Any]:
    """The profile entry of one column (``KeyError`` if the table has no such column)."""
    for column in profile["columns"]:
        if column["name"] == name:
            return column
    raise KeyError(name)


# --------------------------------------------------------------------------- columns
def _profile_column(series: pd.Series, name: str, n_rows: int) -> dict[str, Any]:
    missing = int(series.isna().sum())
    if pd.api.types.is_float_dtype(series.dtype):
        # Fractional numbers are always a number column: only how many differ is needed, which is
        # cheaper than counting each value (and pandas lets go of Python's lock for it).
        counts, kind = pd.Series(dtype=float), "numeric"
        distinct, at_least = _float_distinct(series, n_rows)
    else:
        counts = series.value_counts(dropna=True)
        distinct, kind, at_least = len(counts), _kind(series, name, counts, n_rows - missing), False
    entry: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "dtype": str(series.dtype),
        "missing": missing,
        "missing_share": round(missing / n_rows, 6) if n_rows else 0.0,
        "distinct": distinct,
        "examples": _examples(series, counts, kind),
    }
    if at_least:
        entry["distinct_at_least"] = True
    if kind == "categorical":
        entry["rare_values"] = int((counts < RARE_CATEGORY_ROWS).sum())
    if kind == "numeric":
        values = series.to_numpy(dtype=float, na_value=np.nan)
        values = values[~np.isnan(values)]
        entry["stats"] = _numeric_stats(values)
        entry["integer"] = pd.api.types.is_integer_dtype(series.dtype) or _integer_valued(values)
        entry["log_scale"] = bool(distinct > MANY_CATEGORIES and heavy_tailed(values))
        entry["long_tail"] = bool(distinct > MANY_CATEGORIES and long_tailed(values))
        entry["log_target"] = bool(distinct > MANY_CATEGORIES and log_target(values))
    else:
        entry["stats"] = _stats(series, counts, kind)
    reading = column_reading(entry)
    if reading:
        entry["reading"] = reading
    return entry


def column_reading(column: dict[str, Any]) -> str | None:
    """How the model reads a column whose reading is not plain, in words: dates and their parts, money
    and counts on a log scale, categories with many values (learned vectors, rare values pooled)."""
    name, stats = column["name"], column.get("stats", {})
    if column["kind"] == "datetime" and stats.get("min"):
        parts = ["year", "month", "day of week", "day of year"] + (["hour"] if stats.get("times") else [])
        span = f"{_month_year(stats['min'])} to {_month_year(stats['max'])}"
        return (
            f"'{name}' holds dates ({span}); read as {', '.join(parts[:-1])} and {parts[-1]} (each a number "
            "input)."
        )
    if column["kind"] == "numeric" and column.get("log_scale"):
        return (
            f"'{name}' looks like money or a count: never negative, from {_short_number(stats['min'])} to "
            f"{_short_number(stats['max'])}, most values far below the largest; read on a log scale "
            "(log(1 + value)), so a step from 1,000 to 10,000 counts as much as one from 1 million to 10 "
            "million."
        )
    if column["kind"] == "categorical" and column["distinct"] > MANY_CATEGORIES:
        rare = int(column.get("rare_values", 0))
        pooled = (
            f"the {_plural(rare, 'value')} seen in fewer than {RARE_CATEGORY_ROWS} rows are pooled into one "
            "'rare' value, which also stands for values first seen at prediction time"
            if rare
            else "a value first seen at prediction time is read as 'rare'"
        )
        return (
            f"'{name}' has {column['distinct']:,} different values: each common one gets a learned vector "
            f"(an embedding) rather than a column of its own; {pooled}."
        )
    return None


def _month_year(iso: str) -> str:
    return pd.Timestamp(iso).strftime("%b %Y")


def _short_number(value: float | None) -> str:
    if value is None:
        return "?"
    for size, word in ((1e9, "billion"), (1e6, "million")):
        if abs(value) >= size:
            return f"{value / size:,.1f} {word}".replace(".0 ", " ")
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"


def column_readings(
    profile: dict[str, Any], target: str | None = None, task: str | None = None
) -> list[dict[str, str]]:
    """``[{"column", "message"}]``: every input column whose reading the Data page explains (all but
    ``target``, by default the suggested one), then the target's when a regression (``task``, by default
    the suggested one) learns it on a log scale."""
    if target is None:
        target, task = profile.get("suggested_target"), task or profile.get("suggested_task")
    readings = [
        {"column": c["name"], "message": c["reading"]}
        for c in profile.get("columns", [])
        if c.get("reading") and c["name"] != target
    ]
    column = next((c for c in profile.get("columns", []) if c["name"] == target), None)
    if column is not None and task == "regression" and column.get("log_target"):
        readings.append({"column": str(target), "message": target_reading(column)})
    if column is not None and task in ("classification", "regression"):
        choice, reason = number_embedding_default(profile, target)
        if choice == "periodic":
            readings.append({"column": "", "message": number_embedding_reading(reason)})
    return readings


def number_embedding_reading(reason: str) -> str:
    """What the Data page says when the table network starts with the periodic number embedding."""
    return (
        f"The table network starts with the periodic number embedding ({reason.split(': ', 1)[1]}): each "
        "number input gets a learned vector made of its sines and cosines, so the network can learn bends "
        "and steps along a long tail. Change it under 'Number embedding' in the Train page's advanced settings."
    )


def target_reading(column: dict[str, Any]) -> str:
    """What the Data page says of a regression target learned on a log scale."""
    name, stats = column["name"], column.get("stats", {})
    return (
        f"'{name}', the number to predict, looks like money or a count: never negative, from "
        f"{_short_number(stats.get('min'))} to {_short_number(stats.get('max'))}, with a long tail of large "
        "values. The model learns it on a log scale (log(1 + value)), so it weighs a 10% error on a small "
        f"value as much as on a large one, and gives its predictions back in the units of '{name}'."
    )


def _float_distinct(series: pd.Series, n_rows: int) -> tuple[int, bool]:
    """How many different values a fractional-number column holds, and whether that is a lower bound:
    a long column counts every ``n_rows // DISTINCT_SAMPLE_ROWS``-th row first and, when those already
    hold :data:`EXACT_DISTINCT_BELOW` different values or more, says "at least" that many (counting
    all of a million rows costs as much as the rest of the profile)."""
    if n_rows > DISTINCT_SAMPLE_ROWS:
        seen = int(series.iloc[:: n_rows // DISTINCT_SAMPLE_ROWS].nunique(dropna=True))
        if seen >= EXACT_DISTINCT_BELOW:
            return seen, True
    return int(series.nunique(dropna=True)), False


INTEGER_CHECK_HEAD = 1000


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _integer_valued(values: np.ndarray) -> bool:
    """Whether the present values of a number column (no NaN among them) are all whole numbers.

    A fraction among the first values settles most measurement columns without a pass over them all."""
    if not values.size:
        return False
    head = values[:INTEGER_CHECK_HEAD]
    if not (np.all(np.isfinite(head)) and np.all(head == np.round(head))):
        return False
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def looks_like_id_name(name: str) -> bool:
    """``id``, ``customer_id``, ``PassengerId``, ``uuid`` and the like."""
    return bool(_ID_NAME.search(name.strip()) or _CAMEL_ID.search(name.strip()))


def _kind(series: pd.Series, name: str, counts: pd.Series, present: int) -> str:
    distinct = len(counts)
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if _is_numeric(series):
        if pd.api.types.is_integer_dtype(series.dtype) and present == len(series) and present >= 2:
            # A saved row index: 0..n-1 or 1..n, every value once.
            low, high = int(counts.index.min()), int(counts.index.max())
            row_index = distinct == present >= 20 and low in (0, 1) and high - low + 1 == distinct
            if row_index or (looks_like_id_name(name) and distinct >= 0.95 * present):
                return "identifier"
        return "numeric"
    values = [str(value) for value in counts.index[:500]]
    if not values:
        return "categorical"
    lowered = {value.strip().lower() for value in values}
    if distinct <= 2 and any(lowered <= pair for pair in _BOOLEAN_PAIRS):
        return "boolean"
    if looks_like_dates(series.dropna().head(200).astype(str).str.strip().tolist()):
        return "datetime"
    nearly_all_distinct = present >= 2 and distinct >= 0.95 * present
    if nearly_all_distinct and (looks_like_id_name(name) or all(_UUID.match(v) for v in values[:50])):
        return "identifier"
    if (distinct >= 0.3 * present or distinct >= 1000) and looks_like_text(values):
        return "text"
    if present >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * present:
        return "identifier"
    return "categorical"


def looks_like_dates(values: list[str]) -> bool:
    """Whether the values of a text column are dates or times in a common form ("Jun 12 1998",
    "1998-06-12", "12/06/1998", "2019-03-01 14:22", "Mar-2018"): nearly all of them (``DATE_SHARE``)
    are written like one and read as one. Plain numbers (20190301, 1998) are not dates."""
    values = [value for value in values if value]
    if not values or sum(bool(_PLAIN_NUMBER.match(v)) for v in values) * 2 >= len(values):
        return False
    written = [v for v in values if _ISO_DATE.match(v) or _OTHER_DATE.match(v) or _WORDY_DATE.match(v)]
    if len(written) < DATE_SHARE * len(values):
        return False
    return int(parse_dates(pd.Series(written), day_first(written)).notna().sum()) >= DATE_SHARE * len(values)


def day_first(values: Any) -> bool:
    """Whether dates written with slashes or dots read day first ("25/12/2019"); the same rule as the
    shipped runtime's (``studio.core.runtime.day_first``, which this module cannot import: torch)."""
    first_big = second_big = False
    for value in values:
        parts = re.match(r"^\s*(\d{1,2})[./-](\d{1,2})[./-]\d{2,4}\b", str(value))
        if parts:
            first_big = first_big or int(parts.group(1)) > 12
            second_big = second_big or int(parts.group(2)) > 12
    return first_big and not second_big


def parse_dates(series: pd.Series, dayfirst: bool = False) -> pd.Series:
    """Text dates → UTC timestamps as the shipped runtime reads them (``studio.core.runtime.parse_dates``;
    a test holds the two to the same answers): the first value's format on every row, then the rest one
    by one."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return pd.to_datetime(series, utc=True)
    text = series.astype("string").str.strip()
    text = text.where(text != "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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


def heavy_tailed(values: np.ndarray) -> bool:
    """Whether a number column looks like money or a count, better read on a log scale: never negative,
    spanning orders of magnitude (its 99th percentile at least ``LOG_SPAN`` times its 5th among the
    values above 0), strongly right-skewed (skewness above ``LOG_SKEW``) and less so on the log scale."""
    sample = _tail_sample(values)
    if sample is None:
        return False
    positive = sample[sample > 0]
    if positive.size < 10:
        return False
    low, high = np.quantile(positive, [0.05, 0.99])
    if low <= 0 or high < LOG_SPAN * low:
        return False
    return _skewed_right(sample)


def long_tailed(values: np.ndarray) -> bool:
    """Whether a number column has a long right tail like money or counts: never negative, strongly
    right-skewed (skewness above ``LOG_SKEW``) and less so on the log scale. :func:`heavy_tailed` without
    its span of orders of magnitude: a lot size from 1,300 to 215,000 square feet has it, a standardised
    measurement (negative values) or a roughly symmetric one does not. A table with such a number input
    starts with the periodic number embedding (:func:`number_embedding_default`)."""
    sample = _tail_sample(values)
    return sample is not None and _skewed_right(sample)


def _tail_sample(values: np.ndarray) -> np.ndarray | None:
    """The finite values, evenly spaced rows of them (enough for the shape), or None when there are fewer
    than 20 or any is negative (no money or count)."""
    values = values[np.isfinite(values)]
    if values.size < 20 or values.min() < 0:
        return None
    return values[:: max(1, values.size // DISTINCT_SAMPLE_ROWS)]


def _skewed_right(values: np.ndarray) -> bool:
    """Skewness above ``LOG_SKEW``, and less skewed on the log scale."""
    skew = _skewness(values)
    return skew > LOG_SKEW and abs(_skewness(np.log1p(values))) < skew


def number_embedding_default(
    profile: dict[str, Any], target: str | None, features: list[str] | None = None
) -> tuple[str, str]:
    """The table network's number embedding for this data (``architecture.params.numeric_embedding``):
    ``"periodic"`` where at least one number input (a column other than ``target``; only ``features``
    when given) has a long right tail (:func:`long_tailed`), else ``"none"``; and the reason in a few
    plain words. The Train form starts with this choice and ``python -m studio train`` trains it unless
    told otherwise. Measured on ``bench/quality_screen.py`` (README, issue 20): the periodic embedding
    gains on the tables of money and counts (hitters, ames) and loses on standardised or roughly
    symmetric inputs (diabetes, wine), which have no such column."""
    chosen = set(features or [])
    numbers = [
        c
        for c in profile.get("columns", [])
        if c.get("kind") == "numeric" and c["name"] != target and (not chosen or c["name"] in chosen)
    ]
    tailed = [str(c["name"]) for c in numbers if c.get("long_tail", c.get("log_scale", False))]
    if not numbers:
        return "none", "none: the inputs hold no number column"
    if not tailed:
        return "none", "none: no number input has a long right tail (like money or counts)"
    shown = ", ".join(f"'{name}'" for name in tailed[:3]) + (", …" if len(tailed) > 3 else "")
    verb = "has" if len(tailed) == 1 else "have"
    return "periodic", (
        f"periodic: {counted(len(tailed), 'number input')} {verb} a long right tail, like money or counts "
        f"({shown})"
    )


def log_target(values: np.ndarray) -> bool:
    """Whether a regression target is better learned on a log scale (``log(1 + value)``, predictions given
    back in its own units): never negative, right-skewed (skewness above ``TARGET_LOG_SKEW``) and at
    most half as skewed on the log scale. A looser rule than :func:`heavy_tailed`'s for inputs: measured
    on ``bench/quality.py``, house prices (skewness 1.7, 0.0 on the log scale) and salaries (1.6, -0.2)
    gain from it; a roughly symmetric target (diabetes: 0.4) is left alone."""
    values = values[np.isfinite(values)]
    if values.size < 20 or values.min() < 0:
        return False
    skew = _skewness(values)
    return skew > TARGET_LOG_SKEW and abs(_skewness(np.log1p(values))) <= skew / 2


def _skewness(values: np.ndarray) -> float:
    centred = values - values.mean()
    spread = float(np.mean(centred**2))
    return float(np.mean(centred**3) / spread**1.5) if spread > 0 else 0.0


def looks_like_text(values: list[str]) -> bool:
    """Whether different values of a column read like free text rather than names, codes or IDs: several
    words per value on average, words that recur from value to value (the vocabulary of a language), and
    the little words of sentences ("the", "after", "and") in many values, or long lower-case values.

    "screen cracked after the update" is text; "INV-00172" (one word), "Braund, Mr. Owen Harris" and
    "chevrolet chevelle malibu" (names: no little words), "The Land Girls" (a title: capitalised words) and
    "c0ffee42" are not."""
    tokenized = [_WORD.findall(value) for value in values]
    total = sum(map(len, tokenized))
    if len(values) < 2 or total / len(values) < TEXT_MIN_WORDS:
        return False
    lowered = [[w.lower() for w in found] for found in tokenized]
    seen_in = Counter(word for found in lowered for word in set(found))
    repeated = sum(seen_in[w] >= 2 for found in lowered for w in found) / total
    lower = sum(w[0].islower() for found in tokenized for w in found) / total
    sentences = sum(any(w in STOP_WORDS for w in found) for found in lowered) / len(values)
    long = total / len(values) >= TEXT_LONG_WORDS and lower >= TEXT_LOWER_SHARE
    if lower < TEXT_MIN_LOWER_SHARE:
        return False
    return repeated >= TEXT_REPEATED_SHARE and (sentences >= TEXT_FUNCTION_SHARE or long)


def text_stats(series: pd.Series) -> dict[str, Any]:
    """What the Data page shows of a text column: words per text (mean, median, longest, a histogram),
    how many different words, the most frequent ones (common English words left out), read from the
    first :data:`TEXT_STATS_ROWS` present cells."""
    present = series.dropna()
    rows = len(present)
    texts = present.head(TEXT_STATS_ROWS).astype(str)
    counts = np.fromiter((len(_WORD.findall(t)) for t in texts), dtype="int64", count=len(texts))
    vocabulary: Counter[str] = Counter()
    for text in texts:
        vocabulary.update(w.lower() for w in _WORD.findall(text))
    top = [
        [w, int(c)] for w, c in vocabulary.most_common(TOP_VALUES + len(STOP_WORDS)) if w not in STOP_WORDS
    ]
    stats: dict[str, Any] = {
        "words_mean": round(float(counts.mean()), 2) if counts.size else 0.0,
        "words_median": float(np.median(counts)) if counts.size else 0.0,
        "words_max": int(counts.max()) if counts.size else 0,
        "empty": int((counts == 0).sum()) + int(series.isna().sum()),
        "vocabulary": len(vocabulary),
        "top_words": top[:TOP_VALUES],
        "read_rows": len(texts),
    }
    if rows > len(texts):
        stats["read_rows_of"] = rows
    if counts.size:
        high = max(int(counts.max()), 1)
        edges = np.unique(np.linspace(0, high + 1, TEXT_LENGTH_BINS + 1).round().astype("int64"))
        hist, _ = np.histogram(counts, bins=edges)
        stats["length_histogram"] = {"edges": edges.tolist(), "counts": hist.tolist()}
    return stats


def text_description(name: str, column: dict[str, Any]) -> str:
    """``'review' holds free text: 38 words on average, 12,408 different words``."""
    stats = column.get("stats", {})
    return (
        f"'{name}' holds free text: {_about(stats.get('words_mean', 0))} words on average, "
        f"{stats.get('vocabulary', 0):,} different words"
    )


def _about(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def is_identifier(series: pd.Series) -> bool:
    """Whether a column is a name or an ID: (almost) a different value in every row (see :func:`_kind`)."""
    counts = series.value_counts(dropna=True)
    return _kind(series, str(series.name), counts, int(series.notna().sum())) == "identifier"


def identifier_reason(distinct: int, present: int) -> str:
    """``has a different value in almost every row (311 of 406), like a name or an ID``."""
    every = "every row" if distinct >= present else "almost every row"
    return f"has a different value in {every} ({distinct:,} of {present:,}), like a name or an ID"


def _examples(series: pd.Series, counts: pd.Series, kind: str) -> list[str]:
    if kind in ("numeric", "identifier", "datetime", "text"):
        # The first five different values among the first 1,000 present ones; the first 1,000 rows
        # almost always hold five, which spares dropping the missing cells of a whole column.
        values = pd.unique(series.head(1000).dropna())[:5]
        if len(values) < 5:
            values = pd.unique(series.dropna().head(1000))[:5]
    else:
        values = counts.index[:5]
    return [_text(value) for value in values]


def _numeric_stats(values: np.ndarray) -> dict[str, Any]:
    """Range, mean and spread of the present values of a number column."""
    if not values.size:
        return {"min": None, "max": None, "mean": None, "std": None}
    return {
        "min": _number(values.min()),
        "max": _number(values.max()),
        "mean": _number(values.mean()),
        "std": _number(values.std(ddof=1)) if values.size > 1 else 0.0,
    }


def _stats(series: pd.Series, counts: pd.Series, kind: str) -> dict[str, Any]:
    if kind == "text":
        return text_stats(series)
    if kind == "datetime":
        stamps = _to_datetime(series, counts)
        if stamps is None or stamps.isna().all():
            return {"min": None, "max": None}
        present = stamps.dropna()
        timed = bool(((present.dt.hour != 0) | (present.dt.minute != 0)).any())
        return {"min": present.min().isoformat(), "max": present.max().isoformat(), "times": timed}
    return {"top": [[_text(value), int(count)] for value, count in counts.head(TOP_VALUES).items()]}


def _to_datetime(series: pd.Series, counts: pd.Series) -> pd.Series | None:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.dropna()
    distinct = pd.Series(counts.index.astype(str))
    if len(distinct) > 5000:
        distinct = distinct.head(5000)  # enough for a sensible range; a full parse is slow
    return parse_dates(distinct, day_first(distinct))


def _text(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- target and task
def suggest_target(profile: dict[str, Any]) -> str | None:
    """The column a person would most likely predict, or ``None`` when the table does not say.

    Only numbers, categories and yes/no columns with two values or more are candidates; names, IDs,
    free text and dates (or columns named like a year, month, day …) never are. In order:

    1. a column named like the answer (``target``, ``label``, ``class``, ``species``, ``price``,
       ``Survived``, ``SalePrice``, ``Miles_per_Gallon`` …; whole names before words inside names);
    2. the last column, where most tables keep the answer;
    3. the only category column with few values, when the last column cannot be a target.
    """
    columns = profile["columns"]
    candidates = [column for column in columns if _could_be_target(column)]
    if not candidates:
        return None
    named = _named_target(candidates)
    if named is not None:
        return named
    if columns[-1] in candidates:
        return columns[-1]["name"]
    few = [
        column
        for column in candidates
        if column["kind"] in ("categorical", "boolean")
        and column["distinct"] <= MAX_CLASSES_FOR_INTEGER_TARGET
    ]
    return few[0]["name"] if len(few) == 1 else None


def _name_words(name: str) -> list[str]:
    """``'SalePrice'`` -> ``['sale', 'price']``, ``'MSSubClass'`` -> ``['ms', 'sub', 'class']``."""
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name))
    return [word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word]


def _could_be_target(column: dict[str, Any]) -> bool:
    if column["kind"] not in ("numeric", "categorical", "boolean") or column["distinct"] < 2:
        return False
    words = _name_words(column["name"])
    return not (looks_like_id_name(column["name"]) or DATE_WORDS & set(words) or "".join(words) == "time")


def _named_target(candidates: list[dict[str, Any]]) -> str | None:
    """The candidate named most like an answer (the later column on a tie), or ``None``."""
    best: tuple[int, int] | None = None
    chosen = None
    for position, column in enumerate(candidates):
        words = _name_words(column["name"])
        whole = "".join(words)
        if whole in TARGET_NAMES:
            rank = TARGET_NAMES.index(whole)
        elif any(word in TARGET_WORDS for word in words):
            rank = len(TARGET_NAMES) + min(TARGET_WORDS.index(word) for word in words if word in TARGET_WORDS)
        else:
            continue
        if best is None or (rank, -position) < best:
            best, chosen = (rank, -position), column["name"]
    return chosen


def suggest_task(profile: dict[str, Any], target: str) -> str | None:
    """``classification`` for categories and small sets of whole numbers, ``regression`` for other numbers;
    ``text_classification`` / ``text_regression`` when another column holds free text.

    ``None`` when the column cannot be a target (dates, or a single value).
    """
    column = column_profile(profile, target)
    present = profile["n_rows"] - column["missing"]
    if column["distinct"] < 2 or column["kind"] in ("datetime", "text"):
        return None
    few = column["distinct"] <= MAX_CLASSES_FOR_INTEGER_TARGET and column["distinct"] <= max(2, present // 5)
    classes = column["kind"] != "numeric" or bool(column.get("integer") and few)
    if text_columns(profile, exclude=target):
        return "text_classification" if classes else "text_regression"
    return "classification" if classes else "regression"


def task_for_target(profile: dict[str, Any], target: str | None) -> str | None:
    """The task to suggest for this target: the profile's own suggestion for its suggested target (it may
    know more than the column, e.g. that the table holds a language model's examples), else
    :func:`suggest_task`; ``None`` for a column that is not in the table."""
    if target is None or target == profile.get("suggested_target"):
        return profile.get("suggested_task")
    if not any(c["name"] == target for c in profile.get("columns", [])):
        return None
    return suggest_task(profile, target)


def text_columns(profile: dict[str, Any], exclude: str | None = None) -> list[str]:
    """The columns the profile reads as free text (but ``exclude``, the target)."""
    return [c["name"] for c in profile.get("columns", []) if c["kind"] == "text" and c["name"] != exclude]


# --------------------------------------------------------------------------- warnings
def _warning(code: str, column: str | None, message: str, action: str) -> dict[str, Any]:
    return {"code": code, "column": column, "message": message, "action": action}


def _plural(n: int, word: str) -> str:
    return counted(n, word)


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _table_warnings(profile: dict[str, Any], renamed: list[list[str]]) -> list[dict[str, Any]]:
    found = []
    if renamed:
        pairs = _listing([f"'{old}' -> '{new}'" if old else f"(empty) -> '{new}'" for old, new in renamed])
        found.append(
            _warning(
                "renamed_columns",
                None,
                f"Some column names were empty or repeated, so they were renamed: {pairs}.",
                "The new names are used everywhere in the studio, including for predictions.",
            )
        )
    duplicates = profile["duplicate_rows"]
    if duplicates:
        share = duplicates / profile["n_rows"]
        found.append(
            _warning(
                "duplicates",
                None,
                f"{_plural(duplicates, 'row')} ({share:.0%}) {'repeats' if duplicates == 1 else 'repeat'} an "
                "earlier row exactly.",
                "They are kept; if they are copies made by mistake, remove them, because a row seen in "
                "training and again in validation makes scores look better than they are.",
            )
        )
    return found


def _out_of_range_warnings(counts: list[list[Any]]) -> list[dict[str, Any]]:
    """Numbers too large to train with, made missing while reading (``csv_ingest.out_of_range_to_missing``)."""
    return [
        _warning(
            "out_of_range",
            str(column),
            f"'{column}' has {_plural(int(count), 'value')} too large to train with (beyond ±3.4e38, "
            "or infinite).",
            "They are treated as missing values; if they are errors in the data, fix them and add the file "
            "again.",
        )
        for column, count in counts
    ]


def _column_warnings(profile: dict[str, Any], target: str | None) -> list[dict[str, Any]]:
    found = []
    for column in profile["columns"]:
        name = column["name"]
        if name == target:
            continue
        if column["kind"] == "identifier":
            present = profile["n_rows"] - column["missing"]
            found.append(
                _warning(
                    "identifier",
                    name,
                    f"'{name}' {identifier_reason(column['distinct'], present)}, so it is left out of the "
                    "inputs: a model cannot learn from values it sees only once.",
                    f"It is ignored. To use it anyway, pick it under '{FEATURES_TITLE}' in the Train page's "
                    "advanced settings, with the other columns the model should use.",
                )
            )
        elif column["kind"] == "text":
            found.append(
                _warning(
                    "free_text",
                    name,
                    f"{text_description(name, column)}; it is read as text.",
                    "The text networks (bag of words, pretrained MiniLM) read it; the plain table networks "
                    "leave it out.",
                )
            )
        elif column["distinct"] <= 1:
            what = "no values at all" if column["distinct"] == 0 else "the same value in every row"
            found.append(
                _warning(
                    "constant",
                    name,
                    f"Column '{name}' has {what}, so it cannot help to tell rows apart.",
                    "It will be ignored as a feature.",
                )
            )
        if column["missing_share"] > HIGH_MISSING_SHARE and column["distinct"] > 0:
            found.append(
                _warning(
                    "high_missing",
                    name,
                    f"Column '{name}' is empty in {column['missing_share']:.0%} of rows.",
                    "It is kept: gaps are filled, and marked when 'Mark missing values' is on; leave the "
                    "column out if it is mostly noise.",
                )
            )
    return found


def target_warnings(
    df: pd.DataFrame, profile: dict[str, Any], target: str, task: str | None = None
) -> list[dict[str, Any]]:
    """Warnings that depend on the target column (codes in ``TARGET_WARNING_CODES``).

    A warning that must stop training carries ``"blocks": True`` (``identifier_target``: a name or an
    ID picked as a classification target); the others have no ``blocks`` key.

    ``task`` defaults to :func:`suggest_task` for that target. Use :func:`warnings_for_target` for the
    complete list after the user picks another target.
    """
    if target not in df.columns:
        return []
    task = task or suggest_task(profile, target)
    labels = df[target]
    found = []
    missing = int(labels.isna().sum())
    if missing:
        found.append(
            _warning(
                "target_missing",
                target,
                f"{_plural(missing, 'row')} ({missing / len(df):.0%}) have no value in the target column "
                f"'{target}'.",
                "Those rows will be dropped before training.",
            )
        )
    classes = task is not None and _classes(task)
    refusal = identifier_target_refusal(labels) if classes else None
    if refusal:
        found.append(
            _warning("identifier_target", target, refusal, "Training is refused: pick another target column.")
            | {"blocks": True}
        )
    elif classes:
        found += _class_warnings(labels, target)
    found += _leak_warnings(df, profile, target)
    return found


def _classes(task: str) -> bool:
    from studio.core.tasks import is_task, task_info

    return is_task(task) and task_info(task).classes


def identifier_target_refusal(labels: pd.Series) -> str | None:
    """Why a name or ID column cannot be a classification target, or ``None`` when it can."""
    if not is_identifier(labels):
        return None
    return (
        f"'{labels.name}' {identifier_reason(int(labels.nunique()), int(labels.notna().sum()))}, so it cannot "
        "be predicted as a category: most of its values appear in one row only, and a model cannot learn a "
        "class from one example."
    )


def warnings_for_target(
    df: pd.DataFrame, profile: dict[str, Any], target: str, task: str | None = None
) -> list[dict[str, Any]]:
    """The whole warning list as it reads when ``target`` (not the suggested one) is the target."""
    kept = [w for w in profile["warnings"] if w["code"] in ("renamed_columns", "duplicates", "out_of_range")]
    return kept + _column_warnings(profile, target) + target_warnings(df, profile, target, task)


def _class_warnings(labels: pd.Series, target: str) -> list[dict[str, Any]]:
    counts = labels.value_counts(dropna=True)
    counts.index = [_text(value) for value in counts.index]
    if len(counts) < 2:
        return []
    found = []
    rare = counts[counts < RARE_CLASS_ROWS]
    if len(rare):
        named = _listing([f"'{value}' ({_plural(int(count), 'row')})" for value, count in rare.items()])
        found.append(
            _warning(
                "rare_class",
                target,
                f"{'Class' if len(rare) == 1 else 'Classes'} {named} of '{target}' "
                f"{'has' if len(rare) == 1 else 'have'} fewer than {RARE_CLASS_ROWS} rows.",
                "They are kept, but the model sees too few examples to learn them and they may be missing "
                "from the validation or test rows; merge them with a similar class or add rows.",
            )
        )
    largest, smallest = counts.index[0], counts.index[-1]
    ratio = counts.iloc[0] / counts.iloc[-1]
    if ratio >= IMBALANCE_RATIO:
        found.append(
            _warning(
                "imbalance",
                target,
                f"The classes of '{target}' are imbalanced: '{largest}' has {counts.iloc[0]:,} rows but "
                f"'{smallest}' only {counts.iloc[-1]:,} ({ratio:.0f} to 1), so accuracy may mislead, since "
                f"always answering '{largest}' already scores {counts.iloc[0] / counts.sum():.0%}.",
                "The studio shows the F1 score next to accuracy: it weighs every class equally, so it drops "
                "when a small class is missed.",
            )
        )
    return found


def _leak_warnings(df: pd.DataFrame, profile: dict[str, Any], target: str) -> list[dict[str, Any]]:
    labels = df[target]
    present = labels.notna()
    n_present = int(present.sum())
    target_distinct = column_profile(profile, target)["distinct"]
    if target_distinct < 2:
        return []
    found = []
    for column in profile["columns"]:
        name = column["name"]
        if name == target or column["distinct"] != target_distinct or name not in df.columns:
            continue
        pair = df.loc[present, [name, target]].dropna()
        if len(pair) < max(2, 0.95 * n_present):
            continue
        if _maps_one_to_one(pair[name], pair[target]):
            found.append(
                _warning(
                    "leak",
                    name,
                    f"Column '{name}' gives the target away: each of its values goes with exactly one value "
                    f"of '{target}', so it is most likely a copy or a code of the answer.",
                    "It will be ignored as a feature, because it would not be known for new rows.",
                )
            )
    return found


def _maps_one_to_one(feature: pd.Series, labels: pd.Series) -> bool:
    distinct = labels.nunique()
    if feature.nunique() != distinct:
        return False
    if distinct == len(labels):
        # Every value is unique, so any two unique columns pair up; only a copy or a rescaling is a leak.
        if _is_numeric(feature) and _is_numeric(labels):
            a = feature.to_numpy(dtype=float)
            b = labels.to_numpy(dtype=float)
            if np.array_equal(a, b):
                return True
            if a.std() == 0 or b.std() == 0:
                return False
            return bool(abs(np.corrcoef(a, b)[0, 1]) > 0.999999)
        return bool((feature.map(_text).to_numpy() == labels.map(_text).to_numpy()).all())
    pairs = pd.DataFrame({"f": feature.to_numpy(), "t": labels.to_numpy()}).drop_duplicates()
    return len(pairs) == distinct
