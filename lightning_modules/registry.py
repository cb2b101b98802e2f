"""The architecture registry: ``name -> builder``. Adding a network is one decorated function.

Names, titles and parameter schemas (what the form and the spec validate) live in
``studio.core.spec.ARCHITECTURES``; this module maps the same names to code that builds the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from lightning_modules.image.networks import build_image_network
from studio.core.errors import SpecError
from studio.core.runtime import TabularNet
from studio.core.spec import ARCHITECTURES, pretrainable_architectures


@dataclass(frozen=True)
class TabularShape:
    """What a tabular network needs to know about its inputs and outputs."""

    n_numeric: int
    cardinalities: list[int]
    n_out: int


@dataclass(frozen=True)
class TextShape:
    """What a text network needs to know: the table part's inputs, its outputs, and how its text is read
    (``text``: the encoder's state, e.g. the hash table size; ``model_dir``: a pretrained encoder's files)."""

    n_numeric: int
    cardinalities: list[int]
    n_out: int
    text: dict[str, Any]
    model_dir: str | None = None
    pad_id: int = 0


@dataclass(frozen=True)
class ImageShape:
    """What an image network needs to know: its number of classes (inputs are RGB pictures)."""

    n_classes: int


Builder = Callable[[dict[str, Any], Any], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def wrap(builder: Builder) -> Builder:
        if name not in ARCHITECTURES:
            raise ValueError(f"'{name}' has no entry in studio.core.spec.ARCHITECTURES")
        _BUILDERS[name] = builder
        return builder

    return wrap


def registered() -> list[str]:
    """Every network this module can build: the studio's own, then the catalogue's pretrainable picture
    networks (torchvision's and EfficientNet-Lite)."""
    return list(_BUILDERS) + [name for name in pretrainable_architectures() if name not in _BUILDERS]


def build_network(
    name: str, params: dict[str, Any], shape: TabularShape | ImageShape | TextShape
) -> nn.Module:
    """Build the network called ``name``; an unknown name fails with the list of valid ones.

    The catalogue's pretrainable picture networks need no builder of their own: their entry is enough."""
    builder = _BUILDERS.get(name)
    if builder is None and name in pretrainable_architectures():
        return build_image_network(name, params, shape.n_classes)
    if builder is None:
        raise SpecError(f"Unknown architecture '{name}'; choose one of: {', '.join(registered())}.")
    return builder(params, shape)


@register("mlp")
def _mlp(params: dict[str, Any], shape: TabularShape) -> nn.Module:
    return TabularNet(shape.n_numeric, shape.cardinalities, shape.n_out, **params)


@register("linear")
def _linear(params: dict[str, Any], shape: TabularShape) -> nn.Module:
    return TabularNet(
        shape.n_numeric, shape.cardinalities, shape.n_out, hidden_layers=0, dropout=0.0, batch_norm=False
    )


@register("small_cnn")
def _small_cnn(params: dict[str, Any], shape: ImageShape) -> nn.Module:
    return build_image_network("small_cnn", params, shape.n_classes)


@register("bag_of_words")
def _bag_of_words(params: dict[str, Any], shape: TextShape) -> nn.Module:
    from studio.core.text_runtime import BagOfWordsNet

    return BagOfWordsNet(
        shape.text["buckets"],
        shape.n_numeric,
        shape.cardinalities,
        shape.n_out,
        embedding_dim=params["embedding_dim"],
        hidden=params["hidden"],
        dropout=params["dropout"],
        pooling=params["pooling"],
        token_weights=params["token_weights"],
        linear=params["linear"],
    )


@register("minilm_l6")
def _minilm(params: dict[str, Any], shape: TextShape) -> nn.Module:
    from studio.core.transformer_runtime import TransformerTextNet

    return TransformerTextNet(
        shape.model_dir,
        shape.n_numeric,
        shape.cardinalities,
        shape.n_out,
        frozen_layers=params["frozen_layers"],
        dropout=params["dropout"],
        pad_id=shape.pad_id,
    )
