"""Fold ensembles ('use all my data'): the names of what a run records about them, and the words the
run page, the Runs list, ``jobs show`` and ``train`` say about them. Pure functions of a run's
``quality`` mapping (the job's, or its MLflow metrics); only the standard library."""

from __future__ import annotations

import math
from typing import Any

ENSEMBLE = "ensemble/"
MEMBERS = "ensemble/members"
"""How many fold models the run's model averages."""
MS_PER_ROW = "ensemble/ms_per_row"
"""Milliseconds to predict one row on its own through the whole ensemble (measured after training)."""
MEMBER_MS_PER_ROW = "ensemble/member_ms_per_row"
"""The same row through one fold model alone."""


def member_key(number: int, metric: str) -> str:
    """``ensemble/fold_2/accuracy``: fold model ``number``'s (from 1) test score ``metric``
    (``test/accuracy`` or ``accuracy``)."""
    return f"{ENSEMBLE}fold_{number}/{metric.split('/', 1)[-1]}"


def members(quality: dict[str, Any]) -> int:
    """How many fold models a run's model averages (0: one model, not an ensemble)."""
    value = quality.get(MEMBERS)
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 1 else 0


def _millis(value: float) -> str:
    return f"{value:.2g} ms" if value < 10 else f"{value:.0f} ms"


def cost_sentence(quality: dict[str, Any]) -> str | None:
    """``This model is an ensemble of 5 fold models; each prediction runs all 5 (≈4.8× the time of one:
    0.61 ms per row measured, against 0.13 ms for one).``; None for one model."""
    count = members(quality)
    if not count:
        return None
    sentence = f"This model is an ensemble of {count} fold models; each prediction runs all {count}"
    whole, one = quality.get(MS_PER_ROW), quality.get(MEMBER_MS_PER_ROW)
    if isinstance(whole, (int, float)) and isinstance(one, (int, float)) and one > 0 and whole > 0:
        return (
            f"{sentence} (≈{whole / one:.1f}× the time of one: {_millis(whole)} per row measured, against "
            f"{_millis(one)} for one)."
        )
    return f"{sentence} (≈{count}× the time of one)."


def member_scores(quality: dict[str, Any], metric: str) -> list[float]:
    """Each fold model's own test score ``metric`` (e.g. ``test/accuracy``), in fold order."""
    found = []
    for number in range(1, members(quality) + 1):
        value = quality.get(member_key(number, metric))
        if not isinstance(value, (int, float)):
            return []
        found.append(float(value))
    return found


def scores_sentence(
    quality: dict[str, Any], metric: str, ensemble_value: float | None, words: str
) -> str | None:
    """``Alone, its fold models scored 0.944, 0.963 and 0.926 test accuracy (mean 0.944); averaged into
    one model, 0.963.`` (``words``: the metric in words); None without member scores."""
    scores = member_scores(quality, metric)
    if not scores or ensemble_value is None:
        return None
    shown = [f"{score:.3f}" for score in scores]
    listed = ", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else shown[0]
    mean = sum(scores) / len(scores)
    return (
        f"Alone, its fold models scored {listed} test {words} (mean {mean:.3f}); averaged into one model, "
        f"{ensemble_value:.3f}."
    )


def short_label(quality: dict[str, Any]) -> str:
    """``ensemble of 5`` for the Runs list and ``jobs show``; empty for one model."""
    count = members(quality)
    return f"ensemble of {count}" if count else ""


MAIN_SCORES = (("test/accuracy", "accuracy"), ("test/r2", "R²"))


def lines(outcome: dict[str, Any]) -> list[str]:
    """What to say about a run's fold ensemble, from its test scores and quality in one mapping (the
    job's ``outcome``): the prediction cost, then the fold models' own scores against the average's.
    Empty for one model."""
    cost = cost_sentence(outcome)
    if cost is None:
        return []
    found = [cost]
    for metric, words in MAIN_SCORES:
        value = outcome.get(metric)
        if isinstance(value, (int, float)):
            sentence = scores_sentence(outcome, metric, float(value), words)
            if sentence:
                found.append(sentence)
            break
    if "kept/epoch" in outcome:  # the run's own kept epoch is its first fold model's
        found.append(
            "Each fold model kept its own best epoch; the kept epoch named for this run is the first one's."
        )
    return found
