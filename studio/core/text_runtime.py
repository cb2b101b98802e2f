"""What a trained text model needs at prediction time: reading text columns into word ids, the
bag-of-words network, and the predictor a bundle uses.

Like ``runtime.py`` beside it, this file imports only the standard library, numpy, pandas and torch
(``transformers`` only for pretrained encoders, through ``transformer_runtime.py``), never ``studio``:
training uses it, and text bundles ship a copy of it. Its state is plain JSON.

Words are hashed, not looked up in a vocabulary (fastText's trick): a word, a pair or triple of
neighbouring words, and (when asked) groups of 3 to 5 letters inside a word each become one of
``buckets - 1`` ids through CRC-32, so a text of words never seen in training still reads as the ids of
its parts, and nothing but the table size travels in the bundle. Id 0 is padding.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

TEXT_RUNTIME_VERSION = 1
PAD = 0
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)
"""A word (letters and digits) or one other visible character (punctuation, an emoji)."""


def as_texts(series: pd.Series) -> list[str]:
    """The cells of a text column as strings: missing cells are empty texts, anything else its text."""
    return [
        "" if value is None or (isinstance(value, float) and value != value) else str(value)
        for value in series
    ]


def words(text: str) -> list[str]:
    """``"Screen cracked!! 😀"`` -> ``['screen', 'cracked', '!', '!', '😀']``."""
    return _TOKEN.findall(text.lower())


class HashingTextEncoder:
    """Text columns -> word-id rows ``int64 [n, max_tokens]`` (0-padded). State: ``{"type": "hashing",
    "columns", "max_tokens", "buckets", "word_ngrams", "char_ngrams"}``."""

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.columns: list[str] = list(state["columns"])
        self.max_tokens = int(state["max_tokens"])
        self.buckets = int(state["buckets"])
        self.word_ngrams = int(state["word_ngrams"])
        self.char_ngrams = bool(state["char_ngrams"])
        self._ids: dict[str, int] = {}

    @classmethod
    def new(
        cls, columns: list[str], max_tokens: int, buckets: int, word_ngrams: int, char_ngrams: bool
    ) -> HashingTextEncoder:
        return cls(
            {
                "type": "hashing",
                "version": TEXT_RUNTIME_VERSION,
                "columns": list(columns),
                "max_tokens": int(max_tokens),
                "buckets": int(buckets),
                "word_ngrams": int(word_ngrams),
                "char_ngrams": bool(char_ngrams),
            }
        )

    def _id(self, feature: str) -> int:
        found = self._ids.get(feature)
        if found is None:
            found = zlib.crc32(feature.encode("utf-8")) % (self.buckets - 1) + 1
            if len(self._ids) < 2_000_000:  # words repeat: most lookups hit this table
                self._ids[feature] = found
        return found

    def features(self, text: str, column: int = 0) -> list[str]:
        """The hashed features of one text, in reading order (each word, then the groups it ends)."""
        tokens = words(text)
        prefix = f"{column}\x1f" if len(self.columns) > 1 else ""
        out: list[str] = []
        for i, token in enumerate(tokens):
            out.append(prefix + token)
            for n in range(2, self.word_ngrams + 1):
                if i + 1 >= n:
                    out.append(prefix + " ".join(tokens[i + 1 - n : i + 1]))
            if self.char_ngrams and len(token) > 3:
                marked = f"<{token}>"
                for n in (3, 4, 5):
                    out.extend(prefix + "#" + marked[j : j + n] for j in range(len(marked) - n + 1))
        return out

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, int]:
        """Word ids of every row (the text columns' features one after the other, cut to ``max_tokens``)
        and how many rows were cut. A column absent from ``frame`` reads as empty texts."""
        n = len(frame)
        ids = np.zeros((n, self.max_tokens), dtype="int64")
        cut = 0
        columns = [as_texts(frame[name]) if name in frame.columns else [""] * n for name in self.columns]
        for row in range(n):
            features: list[str] = []
            for c, texts in enumerate(columns):
                features.extend(self.features(texts[row], c))
            if len(features) > self.max_tokens:
                cut += 1
                features = features[: self.max_tokens]
            ids[row, : len(features)] = [self._id(f) for f in features]
        return ids, cut


def embedding_size(cardinality: int) -> int:
    """The size of a category's learned vector (the same rule as ``runtime.embedding_size``)."""
    return int(min(32, max(2, round(1.6 * cardinality**0.56))))


POOLINGS = ("mean", "sqrt", "l2")


def token_weights(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """Each id's inverse document frequency over the rows ``ids`` (``[rows, tokens]``, 0-padded):
    ``log((1 + rows) / (1 + rows holding it)) + 1`` (scikit-learn's smoothed idf), so a word in every
    row weighs 1 and a rare one up to ``log(rows) + 1``; the padding id weighs 0."""
    ids = ids.to("cpu", torch.int64)
    rows = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(ids)
    pairs = torch.unique(rows.reshape(-1) * buckets + ids.reshape(-1))
    counts = torch.bincount(pairs % buckets, minlength=buckets).float()
    weights = torch.log((1.0 + ids.shape[0]) / (1.0 + counts)) + 1.0
    weights[PAD] = 0.0
    return weights


class BagOfWordsNet(nn.Module):
    """The word vectors of each row pooled into one vector, beside the table's numbers and category
    embeddings, then an optional hidden layer and the output layer.

    ``pooling``: ``mean`` (fastText), ``sqrt`` (the sum over the square root of the word count) or
    ``l2`` (the sum over the length of the row's weight vector, as TF-IDF normalises a row).
    ``token_weights``: each word is weighted by its inverse document frequency in the training rows (a
    buffer set by :meth:`fit_token_weights`, saved with the weights). ``linear``: a second table of one
    weight per word and class adds its pooled sum straight to the output (a logistic regression on the
    words beside the vectors' path: NBSVM / fastText's linear model)."""

    def __init__(
        self,
        buckets: int,
        n_numeric: int,
        cardinalities: list[int],
        n_out: int,
        embedding_dim: int = 64,
        hidden: int = 0,
        dropout: float = 0.2,
        pooling: str = "mean",
        token_weights: bool = False,
        linear: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.config = {
            "type": "bag_of_words",
            "buckets": int(buckets),
            "n_numeric": int(n_numeric),
            "cardinalities": [int(c) for c in cardinalities],
            "n_out": int(n_out),
            "embedding_dim": int(embedding_dim),
            "hidden": int(hidden),
            "dropout": float(dropout),
            "pooling": pooling,
            "token_weights": bool(token_weights),
            "linear": bool(linear),
        }
        self.pooling = pooling
        self.plain = pooling == "mean" and not token_weights and not linear  # the EmbeddingBag path
        self.bag = nn.EmbeddingBag(buckets, embedding_dim, mode="mean", padding_idx=PAD)
        nn.init.uniform_(self.bag.weight, -1.0 / embedding_dim, 1.0 / embedding_dim)
        with torch.no_grad():
            self.bag.weight[PAD].zero_()
        if token_weights:
            self.register_buffer("token_weight", torch.ones(buckets))
            with torch.no_grad():
                self.token_weight[PAD] = 0.0
        else:
            self.token_weight = None
        self.linear = nn.Embedding(buckets, n_out) if linear else None
        if self.linear is not None:
            nn.init.zeros_(self.linear.weight)
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_size(c)) for c in cardinalities)
        width = embedding_dim + n_numeric + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            width = hidden
        layers.append(nn.Linear(width, n_out))
        self.head = nn.Sequential(*layers)

    @torch.no_grad()
    def fit_token_weights(self, ids: torch.Tensor) -> None:
        """Set the words' weights from the training rows' ids (a no-op without ``token_weights``)."""
        if self.token_weight is not None:
            self.token_weight.copy_(token_weights(ids, self.token_weight.numel()).to(self.token_weight))

    def _row_weights(self, x_text: torch.Tensor) -> torch.Tensor:
        """``[rows, tokens]``: each token's share of its row's pooled vector (0 for padding)."""
        present = (x_text != PAD).to(self.bag.weight.dtype)
        weights = self.token_weight[x_text] if self.token_weight is not None else present
        if self.pooling == "mean":
            total = weights.sum(dim=1, keepdim=True)
        elif self.pooling == "sqrt":
            total = present.sum(dim=1, keepdim=True).sqrt()
        else:
            total = weights.pow(2).sum(dim=1, keepdim=True).sqrt()
        return weights / total.clamp(min=1e-6)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor, x_text: torch.Tensor) -> torch.Tensor:
        if self.plain:
            pooled, weights = self.bag(x_text), None
        else:
            weights = self._row_weights(x_text).unsqueeze(-1)
            pooled = (nn.functional.embedding(x_text, self.bag.weight) * weights).sum(dim=1)
        parts = [pooled]
        if x_num.shape[1]:
            parts.append(x_num)
        parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        out = self.head(torch.cat(parts, dim=1))
        if self.linear is not None:
            out = out + (self.linear(x_text) * weights).sum(dim=1)
        return out


def build_bag_of_words(config: dict[str, Any], runtime: Any = None) -> nn.Module:
    """The network a bundle's ``network`` describes: one :class:`BagOfWordsNet`, or fold models averaged
    into one ('use all my data': ``members`` alike ones, ``member`` their configuration) as the table
    runtime's ``FoldEnsemble`` (``runtime``: that module, shipped beside this one)."""
    if "members" in config:
        members = [build_bag_of_words(config["member"]) for _ in range(int(config["members"]))]
        return runtime.FoldEnsemble(members, config["combine"])
    kept = {k: v for k, v in config.items() if k != "type"}
    return BagOfWordsNet(**kept)


class TextPredictor:
    """Raw rows with text in, predictions out: the table part through ``runtime.TabularPreprocessor``,
    the text through its encoder (hashing, or a pretrained tokenizer), then the network.

    ``modules`` holds the shipped code files as modules: ``runtime`` (always) and ``transformer``
    (pretrained encoders), so that this file imports no other file of the studio."""

    def __init__(
        self, info: dict[str, Any], weights: dict[str, torch.Tensor] | None, modules: dict[str, Any], files_dir: Any
    ):
        runtime = modules["runtime"]
        self.runtime = runtime
        self.info = info
        self.preprocessor = runtime.TabularPreprocessor(info["preprocessing"])
        self.target = info["target"]
        text_state, network = info["text"], info["network"]
        if text_state["type"] == "hashing":
            self.encoder: Any = HashingTextEncoder(text_state)
            self.net: Any = build_bag_of_words(network, runtime) if weights is not None else None
        else:
            transformer = modules["transformer"]
            self.encoder = transformer.TransformerTextEncoder(text_state, files_dir)
            self.net = transformer.build_transformer_net(network, files_dir) if weights is not None else None
        if self.net is not None:
            self.net.load_state_dict(weights)
            self.net.eval()

    @classmethod
    def load(cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: Any) -> TextPredictor:
        """What the bundle's entry calls: the table runtime and (pretrained networks) the transformer
        runtime are the shipped files ``runtime`` and ``transformer_runtime``."""
        shipped = {"runtime": modules["runtime"], "transformer": modules.get("transformer_runtime")}
        return cls.from_files(info, weights_path, shipped, files)

    def predict_input(self, rows: Any) -> pd.DataFrame:
        return self.predict(self.runtime.as_table_frame(rows))

    @classmethod
    def from_files(
        cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files_dir: Any
    ) -> TextPredictor:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
        return cls(info, weights, modules, files_dir)

    @property
    def text_columns(self) -> list[str]:
        return list(self.encoder.columns)

    @torch.no_grad()
    def logits(self, frame: pd.DataFrame, batch_size: int = 256) -> np.ndarray:
        x_num, x_cat = self.preprocessor.transform(frame)
        x_text, _ = self.encoder.encode(frame)
        outs = [
            self.net(
                torch.from_numpy(x_num[start : start + batch_size]),
                torch.from_numpy(x_cat[start : start + batch_size]),
                torch.from_numpy(x_text[start : start + batch_size]),
            )
            .float()
            .numpy()
            for start in range(0, len(frame), batch_size)
        ]
        n_out = self.net.config["n_out"]
        return np.concatenate(outs) if outs else np.zeros((0, n_out), dtype="float32")

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        predictions = self.runtime.outputs_to_frame(self.logits(frame), self.target, frame.index)
        predictions[self.runtime.WARNING_COLUMN] = self.row_warnings(frame)
        return predictions

    def row_warnings(self, frame: pd.DataFrame) -> list[str]:
        """The table part's warnings, and a word when every text of the row is empty."""
        table = (
            self.preprocessor.row_warnings(frame) if self.preprocessor.input_columns else [""] * len(frame)
        )
        n = len(frame)
        empty = np.ones(n, dtype=bool)
        for name in self.text_columns:
            if name in frame.columns:
                empty &= np.array([not t.strip() for t in as_texts(frame[name])], dtype=bool)
        out = []
        for i in range(n):
            parts = [table[i]] if table[i] else []
            if empty[i]:
                parts.append("the text is empty: this is a guess from the other columns alone")
            out.append("; ".join(parts))
        return out


class OnnxTextPredictor(TextPredictor):
    """A text model's small version: the same table part, text encoder and outputs as
    :class:`TextPredictor`, the network run from the bundle's (8-bit) ``model.onnx`` by ONNX Runtime."""

    @classmethod
    def load(cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: Any) -> TextPredictor:
        runtime = modules["runtime"]
        shipped = {"runtime": runtime, "transformer": modules.get("transformer_runtime")}
        predictor = cls(info, None, shipped, files)
        predictor.net = runtime.OnnxNetwork(runtime.onnx_path(info, weights_path), info["network"])
        return predictor
