"""What a data kind's ``explain_model``, ``explain_row`` and ``compress_model`` return
(:mod:`studio.engine.analysis` runs them as jobs), and the plain sentence that sums up an importance."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class AnalysisCancelled(Exception):
    """Raised by the progress callback when the job was asked to stop."""


class AnalysisRefused(Exception):
    """The work was done but its result is refused (e.g. a small version that loses too much): the
    sentence says why, with the measured numbers; the result is still written for the page."""

    def __init__(self, sentence: str, analysis: Analysis):
        super().__init__(sentence)
        self.analysis = analysis


@dataclass
class Analysis:
    """What an action produced: ``result`` (JSON-safe, what the page draws), ``sentence`` (the plain
    summary), ``metrics`` (logged to the run), ``files`` (name -> path: kept in the job's folder and
    logged to the run)."""

    result: dict[str, Any]
    sentence: str
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def metric_key(prefix: str, name: str) -> str:
    """An MLflow metric name for a user's column name (MLflow allows letters, digits, ``_-. /``)."""
    clean = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name))[:200]
    return f"{prefix}/{clean}"


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def importance_sentence(importances: list[tuple[str, float]], most: int = 3) -> str:
    """E.g. "body mass and flipper length drive most predictions; island hardly matters." from
    ``(name, importance)`` pairs: the few largest that make up most of the total, and those worth
    little next to the largest."""
    ranked = sorted(((str(n), float(v)) for n, v in importances), key=lambda p: p[1], reverse=True)
    positive = [(n, v) for n, v in ranked if v > 0]
    if not positive:
        return "No column matters much on its own: shuffling any one of them barely changes the test score."
    total = sum(v for _, v in positive)
    top, share = [], 0.0
    for name, value in positive[:most]:
        top.append(name)
        share += value
        if share >= 0.6 * total:
            break
    small = [n for n, v in ranked if n not in top and v <= 0.05 * positive[0][1]]
    drive = "drives" if len(top) == 1 else "drive"
    most_words = "most predictions" if share >= 0.6 * total else "the predictions more than the rest"
    sentence = f"{_listed(top)} {drive} {most_words}"
    if small:
        shown = small[:most] + ([f"{len(small) - most} more"] if len(small) > most else [])
        sentence += f"; {_listed(shown)} hardly {'matters' if len(small) == 1 else 'matter'}"
    return sentence + "."


def bundle_predictor(bundle_zip: Path) -> tuple[Any, Any]:
    """``(loaded bundle, its predictor)``: the bundle's own predictor object (``net``, and for a table
    ``preprocessor`` and ``target``; for pictures ``pixels`` and ``network_input``), so an explanation or
    a small version works on exactly what the bundle predicts with. Close the bundle when done."""
    from studio.bundle.reader import load_bundle

    bundle = load_bundle(bundle_zip)
    return bundle, bundle.model.unwrap_python_model().predictor
