"""Which words made a text model predict what it did: integrated gradients on the word embeddings
(Captum), from an empty text (every token's vector at zero for the bag of words; every word piece
replaced by the mask token for a pretrained network) to the text, summed over each embedding's dimensions and gathered
per word of the text.

The bag of words hashes each word, its word groups and (optionally) its letter groups: a word group's
share is split evenly among its words, a letter group's goes to its word. A pretrained network's word
pieces go to the word they were cut from. The result is the text cut into pieces, each with its share
(zero between words), so a page can colour the words in the text as typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studio.modalities.analysis import Analysis, bundle_predictor
from studio.modalities.text import SHOWN_CHARACTERS

IG_STEPS = 50


def _class_and_scale(predictor: Any, logits: Any) -> tuple[int, float, float, Any]:
    import torch

    target = predictor.target
    if target.get("classes"):
        return int(logits.argmax(dim=1)), 1.0, 0.0, lambda out: torch.softmax(out, dim=1)
    if target.get("log_scale"):  # learned on a log scale: explain the prediction in the target's units
        from studio.core.runtime import units_of

        return 0, 1.0, 0.0, lambda out: units_of(out, target)
    return 0, float(target["std"]), float(target["mean"]), lambda out: out


def _pieces(text: str, spans: list[tuple[int, int]], scores: list[float]) -> list[list[Any]]:
    """The whole text as ``[piece, share]``: each span with its score, the text between with 0."""
    out: list[list[Any]] = []
    at = 0
    for (start, end), score in sorted(zip(spans, scores, strict=True)):
        if start < at:
            continue
        if start > at:
            out.append([text[at:start], 0.0])
        out.append([text[start:end], float(score)])
        at = end
    if at < len(text):
        out.append([text[at:], 0.0])
    return out


def bag_of_words_contributions(predictor: Any, row: pd.DataFrame, steps: int = IG_STEPS) -> dict[str, Any]:
    import torch
    from captum.attr import IntegratedGradients

    from studio.core.text_runtime import _TOKEN, as_texts

    net, encoder = predictor.net.eval(), predictor.encoder
    x_num, x_cat = (torch.from_numpy(a) for a in predictor.preprocessor.transform(row))
    ids_np, _ = encoder.encode(row)
    ids = torch.from_numpy(ids_np)
    members = list(getattr(net, "members", [net]))  # fold models averaged into one: each its own vectors

    def one(member: Any, vectors: torch.Tensor) -> torch.Tensor:
        """``member``'s output with these word vectors for the row's tokens (pooled as it pools them)."""
        shares = member._row_weights(ids).unsqueeze(-1)
        parts = [(vectors * shares).sum(dim=1)] + ([x_num.expand(len(vectors), -1)] if x_num.shape[1] else [])
        parts += [emb(x_cat[:, i].expand(len(vectors))) for i, emb in enumerate(member.embeddings)]
        out = member.head(torch.cat(parts, dim=1))
        return out if member.linear is None else out + (member.linear(ids) * shares).sum(dim=1)

    def forward(*vectors: torch.Tensor) -> torch.Tensor:
        outs = [one(member, v) for member, v in zip(members, vectors, strict=True)]
        return net.combined(outs) if len(members) > 1 else outs[0]

    with torch.no_grad():
        vectors = tuple(member.bag.weight[ids].clone() for member in members)
        logits = forward(*vectors)
    chosen, scale, shift, output = _class_and_scale(predictor, logits)
    zeros = tuple(torch.zeros_like(v) for v in vectors)
    attributions, delta = IntegratedGradients(lambda *v: output(forward(*v))).attribute(
        vectors, baselines=zeros, target=chosen, n_steps=steps, return_convergence_delta=True
    )
    per_feature = sum(a.sum(dim=-1)[0] for a in attributions).detach().numpy() * scale
    with torch.no_grad():
        prediction = float(output(forward(*vectors))[0, chosen]) * scale + shift
        baseline = float(output(forward(*zeros))[0, chosen]) * scale + shift
    texts: dict[str, list[list[Any]]] = {}
    position = 0
    for name in encoder.columns:
        text = as_texts(row[name])[0] if name in row.columns else ""
        matches = list(_TOKEN.finditer(text.lower()))
        shares = np.zeros(len(matches))
        tokens = [m.group(0) for m in matches]
        for i, token in enumerate(tokens):  # the features encode() made, in the same order
            groups = [(i, 1)] + [(i + 1 - n, n) for n in range(2, encoder.word_ngrams + 1) if i + 1 >= n]
            letters = 0
            if encoder.char_ngrams and len(token) > 3:  # "<word>" cut in groups of 3, 4 and 5 letters
                letters = sum(max(0, len(token) + 2 - n + 1) for n in (3, 4, 5))
            for first, n in groups + [(i, 1)] * letters:
                if position >= ids.shape[1]:
                    break
                shares[first : first + n] += per_feature[position] / n
                position += 1
        texts[name] = _pieces(text, [m.span() for m in matches], shares.tolist())
    return _result(predictor, texts, prediction, baseline, float(delta[0]) * scale, chosen)


def transformer_contributions(
    predictor: Any, row: pd.DataFrame, steps: int = IG_STEPS
) -> dict[str, Any]:
    import torch
    from captum.attr import LayerIntegratedGradients

    net, encoder = predictor.net.eval(), predictor.encoder
    x_num, x_cat = (torch.from_numpy(a) for a in predictor.preprocessor.transform(row))
    joined, _ = encoder.texts(row)
    encoding = encoder._backend.encode_batch(joined)[0]
    ids = torch.tensor([encoding.ids], dtype=torch.long)
    special = torch.tensor([bool(m) for m in encoding.special_tokens_mask])
    # The reference text: every word piece replaced by the mask (or unknown) token, special tokens kept.
    # Not the padding token: padding is left out of the attention, which would move the reference
    # away from the start of the path the gradients are integrated along.
    tokenizer = encoder.tokenizer
    blank = next((t for t in (tokenizer.mask_token_id, tokenizer.unk_token_id) if t is not None), net.pad_id)
    baseline_ids = torch.where(special, ids, torch.full_like(ids, int(blank)))
    frozen, net.encoder_frozen = net.encoder_frozen, False  # gradients through the encoder

    def forward(token_ids: torch.Tensor) -> torch.Tensor:
        n = len(token_ids)
        return output(net(x_num.expand(n, -1), x_cat.expand(n, -1), token_ids))

    try:
        with torch.no_grad():
            logits = net(x_num, x_cat, ids)
        chosen, scale, shift, output = _class_and_scale(predictor, logits)
        layer = net.encoder.get_input_embeddings()
        attributions, delta = LayerIntegratedGradients(forward, layer).attribute(
            ids, baselines=baseline_ids, target=chosen, n_steps=steps, return_convergence_delta=True,
            internal_batch_size=50,
        )
        with torch.no_grad():
            prediction = float(forward(ids)[0, chosen]) * scale + shift
            baseline = float(forward(baseline_ids)[0, chosen]) * scale + shift
    finally:
        net.encoder_frozen = frozen
    per_token = attributions.sum(dim=-1)[0].detach().numpy() * scale
    words: dict[int, list[Any]] = {}
    for t, (word, (start, end)) in enumerate(zip(encoding.word_ids, encoding.offsets, strict=True)):
        if word is None or special[t] or end <= start:
            continue
        found = words.setdefault((encoding.sequence_ids[t] or 0, word), [start, end, 0.0])
        found[0], found[1] = min(found[0], start), max(found[1], end)
        found[2] += float(per_token[t])
    spans = [(s, e) for s, e, _ in words.values()]
    texts = {" · ".join(encoder.columns): _pieces(joined[0], spans, [v for _, _, v in words.values()])}
    return _result(predictor, texts, prediction, baseline, float(delta[0]) * scale, chosen)


def _result(predictor: Any, texts: dict, prediction: float, baseline: float, delta: float, chosen: int):
    classes = predictor.target.get("classes")
    explains = f"probability of {classes[chosen]}" if classes else str(predictor.target["name"])
    return {
        "texts": texts,
        "prediction": prediction,
        "baseline": baseline,
        "delta": delta,
        "explains": explains,
        "predicted": classes[chosen] if classes else prediction,
    }


def word_sentence(found: dict[str, Any], most: int = 3) -> str:
    pieces = [p for pieces in found["texts"].values() for p in pieces if p[1] != 0]
    up = [p[0] for p in sorted(pieces, key=lambda p: -p[1]) if p[1] > 0][:most]
    down = [p[0] for p in sorted(pieces, key=lambda p: p[1]) if p[1] < 0][:most]
    said = []
    if up:
        said.append(f"{', '.join(repr(w) for w in up)} raised the {found['explains']} most")
    if down:
        said.append(f"{', '.join(repr(w) for w in down)} lowered it most")
    return ("; ".join(said) or "No word moved this prediction") + "."


def contributions(predictor: Any, row: pd.DataFrame) -> dict[str, Any]:
    """Per-word contributions for one row (its text columns, and any table columns) toward what the
    model predicts for it."""
    for name in predictor.encoder.columns:
        if name not in row.columns:
            row[name] = ""
    if predictor.encoder.state["type"] == "hashing":
        return bag_of_words_contributions(predictor, row)
    return transformer_contributions(predictor, row)


def explain_row(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    """Per-word contributions for ``options["row"]`` (its text columns, and any table columns)."""
    bundle, predictor = bundle_predictor(bundle_zip)
    with bundle:
        found = contributions(predictor, pd.DataFrame([options.get("row") or {}]))
    found["sentence"] = word_sentence(found)
    return Analysis(found, found["sentence"])


MISTAKES_EXPLAINED = 10


def shortened(pieces: list[list[Any]], most: int = SHOWN_CHARACTERS) -> list[list[Any]]:
    """The pieces of a text's first ``most`` characters: cut where the mistakes list cuts the text."""
    out, left = [], most
    for piece, share in pieces:
        if left <= 0:
            break
        out.append([piece[:left], share])
        left -= len(piece)
    return out


def worst_test_rows(predictor: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any], list[int]]:
    """``(rows, truth, order)``: the test rows with a target, their true answers, and the positions of
    the mistakes as the run page lists them (classes: the lowest probability given to the true class
    first; numbers: the largest error first)."""
    from studio.modalities.tabular.explain import truth_of

    target = predictor.target
    rows, truth = truth_of(frame, target)
    predicted = predictor.predict(rows)
    if target.get("classes"):
        probabilities = predicted[[f"probability_{c}" for c in target["classes"]]].to_numpy()
        given = probabilities[np.arange(len(truth)), truth]
        wrong = probabilities.argmax(axis=1) != truth
        order = [int(i) for i in np.argsort(given, kind="stable") if wrong[i]]
        return rows, [target["classes"][t] for t in truth], order
    errors = np.abs(predicted[f"predicted_{target['name']}"].to_numpy(dtype="float64") - truth)
    return rows, [float(t) for t in truth], [int(i) for i in np.argsort(-errors, kind="stable")]


def explain_model(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    """Per-word contributions of the test rows the model got most wrong (``options["rows"]`` of them,
    10 by default), each toward what the model predicted: the run page colours its mistakes with them."""
    data = prepared.data
    bundle, predictor = bundle_predictor(bundle_zip)
    explained = []
    with bundle:
        rows, truth, order = worst_test_rows(predictor, data.frame.iloc[data.test_idx])
        chosen = order[: int(options.get("rows", MISTAKES_EXPLAINED))]
        progress(0.1)
        for done, i in enumerate(chosen, start=1):
            found = contributions(predictor, rows.iloc[[i]].reset_index(drop=True))
            explained.append(
                {
                    "texts": {name: shortened(pieces) for name, pieces in found["texts"].items()},
                    "label": truth[i],
                    "predicted": found["predicted"],
                    "explains": found["explains"],
                }
            )
            progress(0.1 + 0.9 * done / len(chosen))
    sentence = (
        f"Which words pushed the model toward its answer in the {len(explained)} test rows it got most wrong."
        if explained
        else "The model got every test row right: no mistakes to explain."
    )
    return Analysis({"rows": explained, "sentence": sentence}, sentence)
