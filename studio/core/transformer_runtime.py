"""Text through a pretrained transformer encoder: tokens in, a class or a number out (self-contained).

This module imports only the standard library, numpy, pandas, torch and (lazily) ``transformers``; it
never imports ``studio``. Training uses it, and a model bundle ships a copy of it, so a
bundle predicts in a Python process where the studio is not installed. Its state is plain JSON; the
tokenizer and the encoder's ``config.json`` are written by :func:`save_files` beside the state dict, so
a bundle rebuilds the network offline, without any cache, and then loads its own weights.

Files a bundle holds (``folder`` below is the bundle's files folder)::

    folder/tokenizer/   tokenizer.json, tokenizer_config.json (what AutoTokenizer.save_pretrained writes)
    folder/encoder/     config.json (the encoder's transformers config; no weights)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

TOKENIZER_FOLDER = "tokenizer"
ENCODER_FOLDER = "encoder"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints a load report (the MiniLM checkpoint's unused pooler) and progress bars;
    a run's log and a bundle's caller see neither."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- tokens
class TransformerTextEncoder:
    """The text columns of a row joined into one sequence of token ids, padded to ``max_length``.

    ``state`` (JSON): ``{"type": "transformer", "columns": [...], "max_length": int, "tokenizer": "<folder
    under files_dir>"}``. Several columns are joined with the tokenizer's separator token
    (``a [SEP] b``), each column in its place even when empty, so the network can tell them apart;
    missing text is the empty string.
    """

    def __init__(self, state: dict[str, Any], files_dir: Path):
        self.state = dict(state)
        self._load(Path(files_dir) / state["tokenizer"])

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, columns: list[str], max_length: int
    ) -> TransformerTextEncoder:
        """For training: the tokenizer of a located pretrained folder; ``state`` names the folder that
        :func:`save_files` writes, so it is the state a bundle stores."""
        encoder = cls.__new__(cls)
        encoder.state = {
            "type": "transformer",
            "columns": list(columns),
            "max_length": int(max_length),
            "tokenizer": TOKENIZER_FOLDER,
        }
        encoder._load(Path(model_dir))
        return encoder

    def _load(self, tokenizer_dir: Path) -> None:
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer

        with _quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(
                str(tokenizer_dir), use_fast=True, local_files_only=True
            )
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"The tokenizer in {tokenizer_dir} has no fast (tokenizer.json) version.")
        self.max_length = int(self.state["max_length"])
        self.columns = list(self.state["columns"])
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:  # decoder-style vocabularies: pad with end-of-text, masked out all the same
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad_id)
        pad_token = self.tokenizer.convert_ids_to_tokens(self.pad_id)
        self.separator = f" {self.tokenizer.sep_token} " if self.tokenizer.sep_token else "\n"
        # An own copy of the Rust tokenizer, truncating and padding to max_length in one batch call.
        self._backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self._backend.enable_truncation(self.max_length)
        self._backend.enable_padding(pad_id=self.pad_id, pad_token=pad_token, length=self.max_length)
        self._plain = Tokenizer.from_str(self._backend.to_str())  # for lengths and offsets: no cut, no pad
        self._plain.no_truncation()
        self._plain.no_padding()
        self._specials = self._backend.num_special_tokens_to_add(False)
        self._separator_tokens = len(self._plain.encode(self.separator, add_special_tokens=False).ids)

    def texts(self, frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
        """One string per row, the text columns joined with the separator (missing text: empty), each
        column cut so that the row fits ``max_length`` tokens, and which rows had text cut there.

        Several columns share the tokens longest first: a short column is kept whole and the long ones
        are cut to equal shares, so a long first column does not push the others out of the sequence.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"The rows lack the text column(s) {', '.join(map(repr, missing))}.")
        columns = [frame[c].astype("string").fillna("").tolist() for c in self.columns]
        cut = np.zeros(len(frame), dtype=bool)
        if len(columns) > 1 and len(frame):
            columns, cut = self._shared(columns)
        return [self.separator.join(parts) for parts in zip(*columns, strict=True)], cut

    def _shared(self, columns: list[list[str]]) -> tuple[list[list[str]], np.ndarray]:
        budget = max(0, self.max_length - self._specials - (len(columns) - 1) * self._separator_tokens)
        encodings = [self._plain.encode_batch(texts, add_special_tokens=False) for texts in columns]
        fitted = [list(texts) for texts in columns]
        cut = np.zeros(len(columns[0]), dtype=bool)
        for row in range(len(cut)):
            lengths = [len(enc[row].ids) for enc in encodings]
            if sum(lengths) <= budget:
                continue
            cut[row] = True
            remaining = budget
            for done, i in enumerate(sorted(range(len(lengths)), key=lengths.__getitem__)):
                share = min(lengths[i], remaining // (len(lengths) - done))
                remaining -= share
                if share < lengths[i]:  # cut the text where its share of tokens ends
                    end = encodings[i][row].offsets[share - 1][1] if share else 0
                    fitted[i][row] = columns[i][row][:end]
        return fitted, cut

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, int]:
        """Token ids ``int64 [rows, max_length]`` (special tokens included, padded with ``pad_id``) and how
        many rows were longer than ``max_length`` and cut."""
        texts, cut = self.texts(frame)
        encodings = self._backend.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(encodings), self.max_length)
        cut |= np.array([bool(e.overflowing) for e in encodings], dtype=bool)
        return ids, int(cut.sum())

    def save(self, folder: Path) -> None:
        """Write the tokenizer files into ``folder / state["tokenizer"]``."""
        target = Path(folder) / self.state["tokenizer"]
        target.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(target))


# --------------------------------------------------------------------------- network
def embedding_size(cardinality: int) -> int:
    """The same rule as the tabular network's category embeddings (``runtime.embedding_size``)."""
    return int(min(32, max(2, round(1.6 * cardinality**0.56))))


def _layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer blocks (BERT, RoBERTa, MiniLM, ELECTRA; DistilBERT; others)."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        module: Any = encoder
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"Cannot find the transformer layers of a {type(encoder).__name__} to freeze them.")


def _embeddings(encoder: nn.Module) -> nn.Module:
    embeddings = getattr(encoder, "embeddings", None)
    return embeddings if isinstance(embeddings, nn.Module) else encoder.get_input_embeddings()


class TransformerTextNet(nn.Module):
    """A pretrained encoder mean-pooled over the real tokens, joined with numbers and category
    embeddings, then dropout and a linear head.

    Frozen: the embeddings always, plus the lowest ``frozen_layers`` transformer blocks (negative or at
    least the number of blocks: the whole encoder). Frozen parts stay in eval mode (no dropout) when the
    network trains, so they are a fixed feature extractor; a wholly frozen encoder runs without
    gradients (no activations kept), which makes a step several times cheaper.
    """

    def __init__(
        self,
        model_dir: str | Path,
        n_numeric: int,
        cardinalities: list[int],
        n_out: int,
        frozen_layers: int = 0,
        dropout: float = 0.1,
        pad_id: int = 0,
        pretrained: bool = True,
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        with _quiet_transformers():
            if pretrained:
                # float32 whatever the checkpoint holds (transformers 5 keeps a half-precision checkpoint's
                # dtype by default); mixed precision is the trainer's business.
                self.encoder = _without_pooler(
                    lambda **kw: AutoModel.from_pretrained(
                        str(model_dir), local_files_only=True, dtype=torch.float32, **kw
                    )
                )
            else:
                config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
                self.encoder = _without_pooler(lambda **kw: AutoModel.from_config(config, **kw))
        self.config = {
            "encoder": ENCODER_FOLDER,
            "n_numeric": int(n_numeric),
            "cardinalities": [int(c) for c in cardinalities],
            "n_out": int(n_out),
            "frozen_layers": int(frozen_layers),
            "dropout": float(dropout),
            "pad_id": int(pad_id),
        }
        self.pad_id = int(pad_id)
        self.n_numeric = int(n_numeric)
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_size(c)) for c in cardinalities)
        width = self.encoder.config.hidden_size + n_numeric + sum(e.embedding_dim for e in self.embeddings)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_out)
        self._frozen = self._freeze(frozen_layers)
        self.encoder_frozen = not any(p.requires_grad for p in self.encoder.parameters())
        self.train()

    def _freeze(self, frozen_layers: int) -> list[nn.Module]:
        layers = _layers(self.encoder)
        whole = frozen_layers < 0 or frozen_layers >= len(layers)
        frozen = [self.encoder] if whole else [_embeddings(self.encoder), *list(layers)[:frozen_layers]]
        for module in frozen:
            module.requires_grad_(False)
        return frozen

    def train(self, mode: bool = True) -> TransformerTextNet:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def encode_text(self, x_text: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over the tokens that are not padding: ``[rows, hidden]``."""
        mask = x_text != self.pad_id
        with torch.no_grad() if self.encoder_frozen else contextlib.nullcontext():
            hidden = self.encoder(input_ids=x_text, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor, x_text: torch.Tensor) -> torch.Tensor:
        pooled = self.encode_text(x_text)
        parts = [pooled]
        if self.n_numeric:
            parts.append(x_num.to(pooled.dtype))
        parts += [emb(x_cat[:, i]).to(pooled.dtype) for i, emb in enumerate(self.embeddings)]
        return self.head(self.dropout(torch.cat(parts, dim=1)))


def _without_pooler(load: Any) -> nn.Module:
    """The encoder without its pooler where the model type allows it: mean pooling does not use it, and
    parameters that get no gradient would make DistributedDataParallel fail."""
    try:
        return load(add_pooling_layer=False)
    except TypeError:
        return load()


def build_transformer_net(config: dict[str, Any], files_dir: Path) -> TransformerTextNet:
    """The network from its ``config`` and the files :func:`save_files` wrote, without pretrained
    weights (random ones, to be replaced by the bundle's state dict); offline, no cache needed."""
    options = {k: v for k, v in config.items() if k != "encoder"}
    return TransformerTextNet(Path(files_dir) / config["encoder"], pretrained=False, **options)


def save_files(net: TransformerTextNet, encoder: TransformerTextEncoder, folder: Path) -> None:
    """Write what a bundle needs beside the state dict: the tokenizer and the encoder's config.json."""
    folder = Path(folder)
    encoder.save(folder)
    target = folder / net.config["encoder"]
    target.mkdir(parents=True, exist_ok=True)
    net.encoder.config.save_pretrained(str(target))
