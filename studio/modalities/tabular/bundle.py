"""The table bundle: the network's weights with the table runtime (``training_studio_runtime.py``, a copy
of :mod:`studio.core.runtime`: the preprocessing and the networks), and an ONNX file whose inputs are the
preprocessed numbers and category codes. A fold ensemble is one bundle whose network averages its
members. Its words for the generic bundle code are the defaults (:data:`FLAVOUR`: raw table rows in)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.bundle.layout import ONNX_FILE, WEIGHTS_FILE, BundleFlavour
from studio.bundle.onnx import _exported, export_inputs, graph_output
from studio.bundle.writer import _example_rows, _finite_metrics, check_finite_weights, write_kind_bundle

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from studio.core.spec import RunSpec

KIND = "tabular"
FLAVOUR = BundleFlavour(KIND, loads_without_predictor=True)
"""Table bundles take raw rows: every word is the bundle code's default (registered by :mod:`.registry`)."""


def write_tabular_bundle(
    path: Path,
    *,
    spec: RunSpec,
    preprocessing: dict,
    target: dict,
    network_config: dict,
    state_dict: dict[str, torch.Tensor],
    sample_rows: pd.DataFrame,
    metrics: dict[str, float],
) -> Path:
    """Write a table model bundle (see the module docstring) at ``path`` and return ``path``.

    A failed ONNX export is logged and recorded in ``studio_model.json``; the bundle is written without it.
    """
    from studio.core.runtime import TabularPreprocessor, build_tabular_net

    check_finite_weights(state_dict)
    preprocessor = TabularPreprocessor(preprocessing)
    input_columns = [
        {"name": column["name"], "kind": group}
        for group in ("numeric", "datetime", "categorical")
        for column in preprocessing[group]
    ]
    net = build_tabular_net(network_config)
    net.load_state_dict(state_dict)
    net.eval()

    def onnx(staging: Path) -> dict[str, Any]:
        n_numeric, n_categorical = preprocessor.n_numeric, len(preprocessor.cardinalities)
        return {"onnx": _try_export_onnx(net, staging / ONNX_FILE, n_numeric, n_categorical, target)}

    info = {
        "kind": KIND,
        "predictor": {"module": "runtime", "class": "TabularPredictor"},
        "task": target["task"],
        "target": target,
        "input_columns": input_columns,
        "preprocessing": preprocessing,
        "network": network_config,
        **_ensemble_info(network_config),
        "metrics": _finite_metrics(metrics),
        "spec": spec.model_dump(mode="json"),
        "example_rows": _example_rows(sample_rows, [c["name"] for c in input_columns]),
    }
    return write_kind_bundle(path, info, state_dict, extra=onnx)


def _ensemble_info(network_config: dict[str, Any]) -> dict[str, Any]:
    """``{"ensemble": {...}}`` for fold models averaged into one (``network.members``), else nothing."""
    if "members" not in network_config:
        return {}
    members, combine = network_config["members"], network_config["combine"]
    what = "class probabilities" if combine == "probabilities" else "predicted values"
    return {
        "ensemble": {
            "members": members,
            "combine": combine,
            "text": (
                f"An ensemble of {members} fold models sharing one preprocessing: each prediction runs "
                f"all {members} and averages their {what}. Their weights are members.<n>.* in "
                f"{WEIGHTS_FILE}."
            ),
        }
    }


def _try_export_onnx(
    net: torch.nn.Module, path: Path, n_numeric: int, n_categorical: int, target: dict[str, Any]
) -> dict[str, Any]:
    """Export the network to ONNX; on failure the bundle goes without it and says why. A regression
    target learned on a log scale (``target.log_scale``) is given back in its own units by the graph."""
    net, output = graph_output(net, target)
    return _exported(
        lambda: _export_onnx(net, path, n_numeric, n_categorical),
        path,
        net.config["n_out"],
        "Inputs come from TabularPreprocessor(preprocessing).transform(rows) in training_studio_runtime.py. "
        + output
        + _ensemble_note(net.config, bool(target.get("log_scale"))),
    )


def _ensemble_note(config: dict[str, Any], log_scale: bool = False) -> str:
    """What the output of a fold ensemble's one graph is (empty for one model)."""
    if "members" not in config:
        return ""
    members = config["members"]
    if config["combine"] == "probabilities":
        return (
            f" This graph averages {members} fold models: its output is the log of the mean of their class "
            "probabilities, so softmax gives that mean."
        )
    if log_scale:
        return (
            f" This graph averages {members} fold models on the log scale: the mean of their network outputs "
            "is what goes back to the target's units."
        )
    return f" This graph averages {members} fold models: its output is the mean of their outputs."


def _export_onnx(
    net: torch.nn.Module, path: Path, n_numeric: int, n_categorical: int, exporter: str = "auto"
) -> str:
    """Export with a dynamic batch axis; returns which exporter wrote the file.

    The TorchScript exporter writes this small network in ~0.1 s where the torch.export-based one needs
    ~2.5 s on a cold process, so it goes first; torch.export is the fallback (and the path once the
    TorchScript exporter is gone). The TorchScript exporter drops an input of width 0, so the inputs are
    read back from the file and listed in ``studio_model.json``.
    """
    import torch

    numeric = torch.zeros(2, n_numeric, dtype=torch.float32)
    categorical = torch.zeros(2, n_categorical, dtype=torch.int64)
    return export_inputs(net, path, (numeric, categorical), ["numeric", "categorical"], exporter)
