"""Where torchvision keeps pretrained weights, and whether they are on this machine (no torch import).

The studio never downloads weights (our machines have no internet access, and a download that hangs
would freeze a run). torchvision's weights API reads ``<torch hub dir>/checkpoints/<file>``; this module
finds that path the way ``torch.hub.get_dir()`` does, so the Train page can say before a run starts
whether the weights are there.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.core.errors import TrainingError
from studio.core.spec import ARCHITECTURES


class PretrainedWeightsMissing(TrainingError):
    """The chosen network should start from pretrained weights that are not in the cache."""


def hub_dir() -> Path:
    """``$TORCH_HOME/hub`` (default ``$XDG_CACHE_HOME/torch/hub``, i.e. ``~/.cache/torch/hub``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub"


def weights_path(architecture: str) -> Path | None:
    """Where torchvision expects the architecture's ImageNet weights; ``None`` if it has none."""
    info = ARCHITECTURES.get(architecture)
    if info is None or not info.pretrained_weights:
        return None
    return hub_dir() / "checkpoints" / info.pretrained_weights


def weights_available(architecture: str) -> bool:
    path = weights_path(architecture)
    return path is not None and path.is_file() and path.stat().st_size > 0


def missing_weights_message(architecture: str) -> str:
    """The sentence shown when pretrained weights are asked for but not on this machine."""
    return (
        f"Pretrained weights for {architecture} are not on this machine (expected at {weights_path(architecture)}); "
        "put the file there or train from scratch by unticking 'pretrained' "
        "(Start from pretrained weights)."
    )


def check_weights(architecture: str, params: dict) -> None:
    """Raise :class:`PretrainedWeightsMissing` if the spec wants weights that are not in the cache."""
    wanted = weights_path(architecture) is not None and params.get("pretrained", False)
    if wanted and not weights_available(architecture):
        raise PretrainedWeightsMissing(missing_weights_message(architecture))
