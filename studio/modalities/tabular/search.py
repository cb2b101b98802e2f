"""Tabular data's search space: the networks a search tries and their settings."""

from __future__ import annotations

from typing import Any

from studio.core.search_dims import Dimension, choice, number

NETWORKS = ("mlp", "linear")


def dimensions(spec: Any, networks: list[str] | None = None) -> list[Dimension]:
    from studio.core.spec import ArchitectureSpec, MLPParams

    mlp = ("architecture.name", ("mlp",))
    return [
        choice(ArchitectureSpec, "name", "architecture.name", tuple(networks or NETWORKS)),
        number(MLPParams, "hidden_layers", "architecture.params.hidden_layers", 1, 4, when=mlp),
        number(MLPParams, "width", "architecture.params.width", 16, 512, log=True, when=mlp),
        number(MLPParams, "dropout", "architecture.params.dropout", 0.0, 0.5, when=mlp),
    ]
