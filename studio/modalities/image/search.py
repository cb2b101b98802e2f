"""Image data's search space: the networks a search tries and their settings."""

from __future__ import annotations

from typing import Any

from studio.core.search_dims import AUGMENTATION, Dimension, choice, number


def dimensions(spec: Any, networks: list[str] | None) -> list[Dimension]:
    from studio.core.pretrained import weights_available
    from studio.core.spec import (
        ArchitectureSpec,
        PretrainableParams,
        SmallCNNParams,
        architectures_for,
        pretrainable_architectures,
    )

    if networks is None:
        networks = [
            name
            for name in architectures_for(spec.task)
            if name not in pretrainable_architectures() or weights_available(name)
        ]
    pretrained = tuple(n for n in networks if n in pretrainable_architectures())
    own = ("architecture.name", ("small_cnn",))
    dims = [choice(ArchitectureSpec, "name", "architecture.name", tuple(networks))]
    if "small_cnn" in networks:
        dims += [
            number(SmallCNNParams, "width", "architecture.params.width", 16, 64, log=True, when=own),
            number(SmallCNNParams, "dropout", "architecture.params.dropout", 0.0, 0.5, when=own),
        ]
    if pretrained:
        dims.append(
            choice(
                PretrainableParams,
                "freeze_backbone",
                "architecture.params.freeze_backbone",
                (False, True),
                when=("architecture.name", pretrained),
            )
        )
    dims.append(Dimension(AUGMENTATION, "float", "Augmentation strength", low=0.0, high=1.0))
    return dims
