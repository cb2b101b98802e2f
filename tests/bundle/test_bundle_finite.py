"""A bundle is never written from weights that hold NaN or infinity, and its JSON holds only finite
numbers (metrics that were NaN become null)."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest
import torch

from studio.core.errors import BundleError
from studio.modalities.image.bundle import write_image_bundle
from studio.modalities.tabular.bundle import write_tabular_bundle
from tests.bundle.test_bundle import make_state as tabular_state
from tests.images.test_bundle_images import make_state as image_state


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_tabular_writer_refuses_non_finite_weights(tmp_path: Path, bad: float) -> None:
    state = tabular_state("regression")
    name = next(key for key, value in state["state_dict"].items() if value.is_floating_point())
    state["state_dict"][name] = state["state_dict"][name].clone()
    state["state_dict"][name].view(-1)[0] = bad
    with pytest.raises(BundleError, match="NaN or infinite values") as caught:
        write_tabular_bundle(tmp_path / "model.zip", **state)
    assert name in str(caught.value)
    assert not list(tmp_path.iterdir())  # not even a partial zip


def test_image_writer_refuses_non_finite_weights(tmp_path: Path) -> None:
    state = image_state("small_cnn")
    running = next(key for key in state["state_dict"] if key.endswith("running_var"))
    state["state_dict"][running] = torch.full_like(state["state_dict"][running], math.inf)
    with pytest.raises(BundleError, match="NaN or infinite values"):
        write_image_bundle(tmp_path / "model.zip", **state)
    assert not list(tmp_path.iterdir())


def test_non_finite_metrics_are_written_as_null(tmp_path: Path) -> None:
    state = tabular_state("classification")
    state["metrics"] = {"test/loss": math.inf, "test/accuracy": math.nan, "test/auroc": 0.75}
    path = write_tabular_bundle(tmp_path / "model.zip", **state)
    with zipfile.ZipFile(path) as zf:
        text = zf.read("artifacts/studio_model.json").decode()
    info = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in studio_model.json"))
    assert info["metrics"] == {"test/loss": None, "test/accuracy": None, "test/auroc": 0.75}


def test_a_non_finite_target_scale_is_refused_plainly(tmp_path: Path) -> None:
    state = tabular_state("regression")
    state["target"] = {**state["target"], "std": math.inf}
    with pytest.raises(BundleError, match="NaN or infinite number"):
        write_tabular_bundle(tmp_path / "model.zip", **state)
