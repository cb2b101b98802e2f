"""Why a table model predicts what it does, in the table's own columns (never the encoded ones).

- Whole model: permutation importance on the test split. Each raw column's values are shuffled among
  the test rows, several times, and the drop in the test score (accuracy, or R² for a number) is that
  column's importance, with its spread over the repeats.
- One prediction: Captum's integrated gradients on the network's encoded input (the scaled numbers, the
  missing-value flags and the categories' embeddings), from a baseline (the average encoded test row) to
  the row, summed back to the raw column each part came from. The contributions add up to the
  prediction minus the baseline's prediction (integrated gradients' completeness).

Both read the network and preprocessing from the run's bundle (the same code the bundle predicts with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studio.modalities.analysis import Analysis, bundle_predictor, importance_sentence, metric_key

REPEATS = 5
IG_STEPS = 64
MAX_ROWS = 5000
"""Permutation importance uses at most this many test rows (a 1,000-row split takes a few seconds)."""


def network_outputs(predictor: Any, frame: pd.DataFrame) -> np.ndarray:
    import torch

    x_num, x_cat = predictor.preprocessor.transform(frame)
    with torch.no_grad():
        return predictor.net(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()


def score(outputs: np.ndarray, truth: np.ndarray, target: dict[str, Any]) -> float:
    """Accuracy (class indices in ``truth``) or R² (numbers in the target's units)."""
    if target["task"] == "classification":
        return float((outputs.argmax(axis=1) == truth).mean())
    from studio.core.runtime import target_units

    predicted = target_units(outputs, target)
    spread = float(((truth - truth.mean()) ** 2).sum())
    return 1.0 - float(((truth - predicted) ** 2).sum()) / spread if spread > 0 else 0.0


def truth_of(frame: pd.DataFrame, target: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows whose target the model can be scored on, and their truth (class index or number)."""
    from studio.core.runtime import _as_category_text, _as_float

    column = frame[target["name"]]
    if target["task"] == "classification":
        lookup = {name: i for i, name in enumerate(target["classes"])}
        codes = np.array([lookup.get(v, -1) for v in _as_category_text(column)], dtype="int64")
        keep = codes >= 0
        return frame.loc[keep], codes[keep]
    values = _as_float(column)
    keep = np.isfinite(values)
    return frame.loc[keep], values[keep]


def permutation_importance(
    predictor: Any,
    frame: pd.DataFrame,
    *,
    repeats: int = REPEATS,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Each input column's drop in the test score when its values are shuffled (mean, spread and every
    repeat), largest first, plus the unshuffled score."""
    target = predictor.target
    rows, truth = truth_of(frame, target)
    if len(rows) > MAX_ROWS:
        rows, truth = rows.iloc[:MAX_ROWS], truth[:MAX_ROWS]
    rows = rows.reset_index(drop=True)
    columns = predictor.preprocessor.input_columns
    base = score(network_outputs(predictor, rows), truth, target)
    rng = np.random.default_rng(seed)
    found = []
    for i, name in enumerate(columns):
        drops = []
        original = rows[name] if name in rows.columns else None
        for _ in range(repeats):
            shuffled = rows.copy(deep=False)
            if original is not None:
                shuffled[name] = original.to_numpy()[rng.permutation(len(rows))]
            drops.append(base - score(network_outputs(predictor, shuffled), truth, target))
        found.append(
            {
                "column": name,
                "mean": float(np.mean(drops)),
                "std": float(np.std(drops)),
                "drops": [float(d) for d in drops],
            }
        )
        if progress is not None:
            progress(0.1 + 0.85 * (i + 1) / max(1, len(columns)))
    found.sort(key=lambda item: item["mean"], reverse=True)
    metric = "accuracy" if target["task"] == "classification" else "R²"
    return {"metric": metric, "score": base, "rows": len(rows), "repeats": repeats, "columns": found}


# --------------------------------------------------------------------------- one prediction
def _members(net: Any) -> list[Any]:
    """The networks behind a bundle's: fold models averaged into one (each its own weights), or one."""
    return list(getattr(net, "members", [net]))


def _column_parts(predictor: Any) -> list[tuple[str, int]]:
    """The raw column behind each part of the network's first layer's input, as ``(name, width)`` runs:
    numbers (+ missing flag), dates' parts (+ flag), one-hot categories, then category embeddings."""
    state = predictor.preprocessor.state
    from studio.core.runtime import DATE_PARTS

    parts = [(c["name"], 1 + int(c["indicator"])) for c in state["numeric"]]
    parts += [(c["name"], len(DATE_PARTS) + int(c["indicator"])) for c in state["datetime"]]
    if state["categorical_encoding"] == "onehot":
        parts += [(c["name"], len(c["vocab"]) + 1) for c in state["categorical"]]
    else:
        embeddings = _members(predictor.net)[0].embeddings
        parts += [(c["name"], e.embedding_dim) for c, e in zip(state["categorical"], embeddings, strict=True)]
    return parts


def _first_layer_input(net: Any, x_num: Any, x_cat: Any) -> Any:
    """The scaled numbers (before a number embedding) and the category vectors, side by side: what the
    contributions are measured on."""
    import torch

    pieces = [x_num] if x_num.shape[1] else []
    pieces += [emb(x_cat[:, i]) for i, emb in enumerate(net.embeddings)]
    return torch.cat(pieces, dim=1)


def _from_first_layer_input(net: Any, inputs: Any) -> Any:
    """The network's output from :func:`_first_layer_input`'s: the numbers through its number embedding
    (periodic: a learned vector of each number's sines and cosines) when it has one, then the MLP."""
    import torch

    embedding = getattr(net, "numeric_embedding", None)
    if embedding is None:
        return net.mlp(inputs)
    n_numeric = int(net.config["n_numeric"])
    return net.mlp(torch.cat([embedding(inputs[:, :n_numeric]), inputs[:, n_numeric:]], dim=1))


def row_contributions(
    predictor: Any, row: pd.DataFrame, reference: pd.DataFrame, steps: int = IG_STEPS
) -> dict[str, Any]:
    """Integrated gradients for one row, per raw column: ``contributions`` (column -> amount, in the
    prediction's units: the predicted class's probability, or the target's units), ``baseline`` (the
    prediction for the average test row), ``prediction`` and ``delta`` (how far the sum misses
    prediction minus baseline: the integral's error). Fold models averaged into one: each member's
    input is its own (its category vectors), the attributions of all of them add up per column."""
    import torch
    from captum.attr import IntegratedGradients

    net, target = predictor.net, predictor.target
    members = _members(net)
    if members[0].empty_input:
        raise ValueError("this model has no inputs to explain")
    net.eval()
    x_row = [torch.from_numpy(a) for a in predictor.preprocessor.transform(row.iloc[:1])]
    x_ref = [torch.from_numpy(a) for a in predictor.preprocessor.transform(reference)]
    with torch.no_grad():
        z = tuple(_first_layer_input(m, *x_row) for m in members)
        z0 = tuple(_first_layer_input(m, *x_ref).mean(dim=0, keepdim=True) for m in members)

    def outputs(*inputs: torch.Tensor) -> torch.Tensor:
        each = [_from_first_layer_input(m, i) for m, i in zip(members, inputs, strict=True)]
        return net.combined(each) if len(members) > 1 else each[0]

    classes = target.get("classes")

    if classes:
        def forward(*inputs: torch.Tensor) -> torch.Tensor:
            return torch.softmax(outputs(*inputs), dim=1)

        with torch.no_grad():
            chosen = int(outputs(*z).argmax(dim=1))
        scale, shift = 1.0, 0.0
    elif target.get("log_scale"):  # learned on a log scale: explain the prediction in the target's units
        from studio.core.runtime import units_of

        def forward(*inputs: torch.Tensor) -> torch.Tensor:
            return units_of(outputs(*inputs), target)

        chosen, scale, shift = 0, 1.0, 0.0
    else:
        def forward(*inputs: torch.Tensor) -> torch.Tensor:
            return outputs(*inputs)

        chosen, scale, shift = 0, float(target["std"]), float(target["mean"])
    z64, z064 = tuple(i.double() for i in z), tuple(i.double() for i in z0)
    net64 = net.double()
    try:
        attributions, delta = IntegratedGradients(forward).attribute(
            z64, baselines=z064, target=chosen, n_steps=steps, return_convergence_delta=True
        )
        with torch.no_grad():
            prediction = float(forward(*z64)[0, chosen]) * scale + shift
            baseline = float(forward(*z064)[0, chosen]) * scale + shift
    finally:
        net64.float()
    values = sum(a[0].detach().numpy() for a in attributions) * scale
    contributions: dict[str, float] = {}
    start = 0
    for name, width in _column_parts(predictor):
        contributions[name] = contributions.get(name, 0.0) + float(values[start : start + width].sum())
        start += width
    return {
        "contributions": contributions,
        "baseline": baseline,
        "prediction": prediction,
        "delta": float(delta[0]) * scale,
        "explains": f"probability of {classes[chosen]}" if classes else str(target["name"]),
        "predicted": classes[chosen] if classes else prediction,
    }


# --------------------------------------------------------------------------- the kind's seam
def explain_model(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    """Permutation importance on the run's test split (the kind's ``explain_model``)."""
    data = prepared.data
    test = data.frame.iloc[data.test_idx]
    bundle, predictor = bundle_predictor(bundle_zip)
    with bundle:
        found = permutation_importance(
            predictor, test, repeats=int(options.get("repeats", REPEATS)), progress=progress
        )
    found["sentence"] = importance_sentence([(c["column"], c["mean"]) for c in found["columns"]])
    metrics = {metric_key("importance", c["column"]): c["mean"] for c in found["columns"]}
    return Analysis(found, found["sentence"], metrics)


def explain_row(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    """Integrated gradients for the row in ``options["row"]`` (a dict of raw cells), from the average
    test row (the kind's ``explain_row``)."""
    data = prepared.data
    reference = data.frame.iloc[data.test_idx[:500]]
    row = pd.DataFrame([options.get("row") or {}])
    bundle, predictor = bundle_predictor(bundle_zip)
    with bundle:
        found = row_contributions(predictor, row, reference)
    ranked = sorted(found["contributions"].items(), key=lambda p: abs(p[1]), reverse=True)
    found["sentence"] = row_sentence(found, ranked)
    return Analysis(found, found["sentence"])


def row_sentence(found: dict[str, Any], ranked: list[tuple[str, float]]) -> str:
    """E.g. "island pushed the probability of Gentoo up by 0.41; bill length pushed it down by 0.08
    (0.33 for an average row)." """
    moves = [f"pushed {'it' if i else 'the ' + found['explains']} {'up' if v > 0 else 'down'} by {abs(v):.3g}"
             for i, (_, v) in enumerate(ranked[:2])]
    if not moves or abs(ranked[0][1]) < 1e-9:
        return "No column moved this prediction away from an average row's."
    said = "; ".join(f"{name} {move}" for (name, _), move in zip(ranked, moves, strict=False))
    return f"{said} ({found['baseline']:.3g} for an average row)."
