"""The text data kind: a table whose inputs include free-text columns (``text_classification``,
``text_regression``). The table part is prepared as the tabular kind prepares it (numbers, categories,
dates); the text columns are read by the network's encoder: hashed words for the bag of words
(``studio.core.text_runtime``), a pretrained tokenizer for MiniLM (``studio.core.transformer_runtime``).
Both runtimes travel in the bundle, which predicts raw text without the studio."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from studio import tracking
from studio.core.spec import ARCHITECTURES, RunSpec
from studio.modalities import register
from studio.modalities.text import SHOWN_CHARACTERS

TAG_TEXT_COLUMNS = "studio.text_columns"
TAG_TEXT_CUT = "studio.text_cut_rows"
PREDICTIONS_ARTIFACT = tracking.TEXT_PREDICTIONS_ARTIFACT
"""The test rows the model got most wrong (text, truth, prediction), for the run page."""
SHOWN_ERRORS = 50


def make_encoder(spec: RunSpec, columns: list[str]) -> tuple[Any, Path | None]:
    """The text encoder of the spec's network (hashed words, or the pretrained network's tokenizer) and
    the pretrained network's folder (``None`` for the bag of words)."""
    params = spec.architecture.params
    info = ARCHITECTURES[spec.architecture.name]
    if info.hub_id is None:
        from studio.core.text_runtime import HashingTextEncoder

        encoder = HashingTextEncoder.new(
            columns, params["max_tokens"], params["buckets"], params["word_ngrams"], params["char_ngrams"]
        )
        return encoder, None
    from studio.core.pretrained import encoder_positions, locate_pretrained
    from studio.core.transformer_runtime import TransformerTextEncoder

    # the catalogue's own model, or any Hugging Face encoder by Hub id or folder; a plain TextEncoderMissing
    # (a TrainingError) when it is not on this machine and downloads are not allowed
    folder = locate_pretrained(params.get("model") or spec.architecture.name)
    length = min(params["max_length"], encoder_positions(folder) or params["max_length"])  # what it can read
    return TransformerTextEncoder.from_pretrained(folder, columns, length), folder


@dataclass
class PreparedText:
    data: Any
    encoder: Any
    model_dir: Path | None = None
    cut: dict[str, int] = field(default_factory=dict)

    def run_tags(self, precision: str) -> dict[str, str]:
        return {
            tracking.TAG_IGNORED_COLUMNS: ", ".join(self.data.plan.ignored) or "none",
            TAG_TEXT_COLUMNS: ", ".join(self.data.plan.text),
            TAG_TEXT_CUT: str(self.cut.get("rows", 0)),
            tracking.TAG_PRECISION: precision,
        }

    def lightning_module(self, spec: RunSpec, steps_per_epoch: int, accumulate: int) -> Any:
        from lightning_modules.registry import TextShape, build_network
        from studio.modalities.tabular.modality import table_module

        data = self.data
        shape = TextShape(
            data.preprocessor.n_numeric,
            data.preprocessor.cardinalities,
            data.n_out,
            self.encoder.state,
            str(self.model_dir) if self.model_dir else None,
            getattr(self.encoder, "pad_id", 0),
        )
        net = build_network(spec.architecture.name, spec.architecture.params, shape)
        if hasattr(net, "fit_token_weights"):  # the bag of words: how rare each word is in the training rows
            net.fit_token_weights(data.tensors["train"][2])
        return table_module(net, data, spec, steps_per_epoch, accumulate)

    def ensemble(self, spec: RunSpec, nets: list[Any]) -> Any:
        """The LightningModule of bag-of-words fold models averaged into one, as for tables: they share
        this run's table preprocessing (fitted on every row that is not a test row) and its hashing
        encoder (no fitted vocabulary); each keeps its own word weights (``token_weights``: the idf of
        its own training rows). A pretrained network is refused by the spec before anything trains."""
        from studio.modalities.tabular.modality import PreparedTable

        return PreparedTable(self.data).ensemble(spec, nets)

    def after_test(self, run_id: str, spec: RunSpec, module: Any) -> None:
        """The test rows the model got most wrong, with their text, for the run page."""
        tracking.client().log_dict(
            run_id, tracking.json_safe(worst_rows(self.data, module)), PREDICTIONS_ARTIFACT
        )

    def write_bundle(self, folder: Path, spec: RunSpec, module: Any, metrics: dict[str, float]) -> Path:
        from studio.modalities.text.bundle import write_text_bundle

        data = self.data
        return write_text_bundle(
            folder / "model.zip",
            spec=spec,
            preprocessing=data.preprocessor.state,
            target=data.target_state,
            encoder=self.encoder,
            net=module.net,
            sample_rows=data.frame.iloc[data.test_idx[:5]].drop(columns=[spec.data.target]),
            metrics=metrics,
        )

    def add_to_result(self, result: Any) -> None:
        result.ignored_columns = dict(self.data.plan.ignored)
        result.dropped_rows = self.data.dropped_rows

    def notes(self) -> list[str]:
        """How many rows' texts were longer than the network reads (they were cut to it)."""
        cut, rows = self.cut.get("rows", 0), len(self.data.frame)
        if not cut:
            return []
        state = self.encoder.state
        length = (
            f"{state['max_tokens']} words and word groups" if "max_tokens" in state else f"{state['max_length']} tokens"
        )
        return [
            f"{cut:,} of {rows:,} rows had more text than the network reads ({length}); they were cut to it "
            "(raise 'Most words per row' / 'Most tokens per row' to read more)."
        ]


def worst_rows(data: Any, module: Any) -> dict[str, Any]:
    """The test split's rows the model got most wrong: classes, the lowest probability given to the
    true class first; numbers, the largest error first. Texts are cut to a readable length."""
    import numpy as np
    import torch

    from studio.core.runtime import label_units, target_units

    net = module.net
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    *inputs, y = data.tensors["test"]
    outs = []
    with torch.no_grad():
        for start in range(0, len(y), 256):
            outs.append(net(*(x[start : start + 256].to(device) for x in inputs)).float().cpu())
    net.train(was_training)
    out = torch.cat(outs).numpy() if outs else np.zeros((0, data.n_out), dtype="float32")
    truth = y.cpu().numpy()
    frame = data.frame.iloc[data.test_idx]
    texts = {
        name: [str(v)[:SHOWN_CHARACTERS] if pd.notna(v) else "" for v in frame[name]]
        for name in data.plan.text
    }
    target = data.target_state
    rows = []
    if data.head == "classification":
        shifted = out - out.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        given = probabilities[np.arange(len(truth)), truth]
        predicted = probabilities.argmax(axis=1)
        order = [int(i) for i in np.argsort(given, kind="stable") if predicted[i] != truth[i]]
        for i in order[:SHOWN_ERRORS]:
            rows.append(
                {
                    "texts": {name: texts[name][i] for name in texts},
                    "label": target["classes"][truth[i]],
                    "predicted": target["classes"][predicted[i]],
                    "probability": round(float(probabilities[i, predicted[i]]), 4),
                    "probability_of_label": round(float(given[i]), 4),
                }
            )
    else:
        values, actual = target_units(out, target), label_units(truth, target)
        errors = np.abs(values - actual)
        for i in np.argsort(-errors, kind="stable")[:SHOWN_ERRORS]:
            rows.append(
                {
                    "texts": {name: texts[name][int(i)] for name in texts},
                    "label": float(actual[i]),
                    "predicted": float(values[i]),
                    "error": float(errors[i]),
                }
            )
    return {
        "task": data.head,
        "text_columns": list(data.plan.text),
        "test_rows": int(len(truth)),
        "rows": rows,
    }


class TextModality:
    name = "text"
    search_batch_sizes = (16, 32, 64, 128, 256, 512)
    search_learning_rates = (1e-4, 5e-2)
    lr_find_steps = 100

    def search_dimensions(self, spec: RunSpec, networks: list[str] | None = None) -> list[Any]:
        from studio.modalities.text.search import dimensions

        return dimensions(spec, networks)

    folds = True
    ensembles = True  # 'use all my data' with the bag of words (PreparedText.ensemble; a pretrained
    # network is refused by the spec: as many copies of it as there are folds)
    fold_models_up_to = 6_500
    """'Use all my data' starts on for texts of up to this many rows read by the bag of words, never with a
    pretrained network (:func:`studio.modalities.fold_models_by_default`). On 2,000 rows of the two sets of
    ``bench/text_quality.py`` (split seeds 0-2) five fold models scored 0.8 and 0.2 points above one model on
    the means (-0.3 to +1.0 by seed) and the whole run took 17-42 s on a 2-core CPU (one model: 4-10 s). At
    the sets' full size (5,000 and 6,001 rows) they scored +1.7 and +1.6 points through the studio (split
    seed 0: within a point of TF-IDF, one model 2.5 and 2.0 behind) and +0.9 and +0.9 on the mean of four
    splits (three more in a plain loop), at 3-5x the whole run's time (27 -> 142 s and 53 -> 172 s on a
    2-core CPU at load 3-4, 2026-12-06)."""

    def device_plan(self, plan: Any) -> Any:
        return plan

    def explain_row(self, *args: Any) -> Any:
        from studio.modalities.text.explain import explain_row

        return explain_row(*args)

    def explain_model(self, *args: Any) -> Any:
        from studio.modalities.text.explain import explain_model

        return explain_model(*args)

    def compress_model(self, *args: Any) -> Any:
        from studio.modalities.text.compress import compress_model

        return compress_model(*args)

    def prepare(
        self, spec: RunSpec, dataset: Any, table: pd.DataFrame, profile: dict[str, Any], fold: int = 0
    ) -> PreparedText:
        """The table part as the tabular kind prepares it, plus the text columns' word ids from the
        network's encoder (a pretrained network's files are found before any text is read)."""
        from studio.modalities.tabular.ingest import out_of_range_to_missing
        from studio.modalities.tabular.prepare import table_data_module

        out_of_range_to_missing(table)
        prepared = PreparedText(data=None, encoder=None)

        def text_inputs(plan: Any) -> Any:
            prepared.encoder, prepared.model_dir = make_encoder(spec, plan.text)

            def encode(rows: pd.DataFrame) -> list[Any]:
                ids, cut = prepared.encoder.encode(rows)
                prepared.cut["rows"] = int(cut)
                return [ids]

            return encode

        prepared.data = table_data_module(table, profile, spec, fold, read_text=True, text_inputs=text_inputs)
        return prepared

    def predict_file(self, bundle_zip: Path, info: dict[str, Any], data: Path) -> pd.DataFrame:
        from studio.modalities.tabular.modality import predict_table_file

        return predict_table_file(bundle_zip, info, data)


register(TextModality())
