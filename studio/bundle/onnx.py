"""Exporting a bundle's network to ONNX with a dynamic batch axis, and describing the exported inputs for
the bundle's info file. Each kind's bundle module says what its network's inputs are."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


from studio.bundle.layout import ONNX_FILE, _quiet_loggers

_log = logging.getLogger(__name__)


def _exported(export: Callable[[], str], path: Path, n_out: int, note: str) -> dict[str, Any]:
    """Run ``export`` (it writes ``path`` and names the exporter) and describe the file; on any failure
    the bundle goes without ONNX (the pyfunc model does not need it) and says why."""
    try:
        exporter = export()
        _one_file(path)
        inputs = _onnx_inputs(path)
    except Exception as err:
        _log.warning("ONNX export failed, the bundle is written without model.onnx: %s", err)
        path.unlink(missing_ok=True)
        return {
            "file": None,
            "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}",
        }
    return {
        "file": f"artifacts/{ONNX_FILE}",
        "exporter": exporter,
        "inputs": inputs,
        "output": {"name": "output", "dtype": "float32", "shape": ["batch", n_out]},
        "note": note,
    }


def graph_output(net: torch.nn.Module, target: dict[str, Any]) -> tuple[torch.nn.Module, str]:
    """The network to export and what its output is, in words: a regression target learned on a log
    scale (``target.log_scale``) comes out of the graph in its own units."""
    if target["task"] == "classification":
        return net, "The output holds one logit per class in the order of target.classes; softmax gives probabilities."
    if target.get("log_scale"):
        from studio.core.runtime import InTargetUnits

        smear = " × target.smear" if float(target.get("smear", 1.0)) != 1.0 else ""
        return InTargetUnits(net, target), (
            f"The output is '{target['name']}' in its own units: the network learned it on a log scale "
            "(target.log_scale), and the graph ends with exp(network output × target.std + target.mean, kept "
            f"within target.log_range){smear} − 1."
        )
    return net, "The output is the scaled target: multiply by target.std and add target.mean."


def export_inputs(
    net: torch.nn.Module, path: Path, examples: tuple[Any, ...], names: list[str], exporter: str = "auto"
) -> str:
    """Export a network of several inputs (``examples``, named ``names``, batch first) with a dynamic
    batch axis; returns which exporter wrote the file (TorchScript's first, torch.export's as fallback)."""
    import torch

    io_names = {"input_names": list(names), "output_names": ["output"]}
    errors = []
    for name in ("torchscript", "dynamo") if exporter == "auto" else (exporter,):
        try:
            with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "onnxscript"):
                warnings.simplefilter("ignore")
                if name == "torchscript":
                    axes = {n: {0: "batch"} for n in [*names, "output"]}
                    torch.onnx.export(net, examples, str(path), dynamo=False, dynamic_axes=axes, **io_names)
                else:
                    batch = torch.export.Dim("batch")
                    torch.onnx.export(
                        net,
                        examples,
                        str(path),
                        dynamo=True,
                        dynamic_shapes=_batch_shapes(net, examples, batch),
                        verbose=False,
                        **io_names,
                    )
            return name
        except Exception as err:  # try the next exporter, report all if none works
            errors.append(f"{name}: {err}")
    raise RuntimeError("; ".join(errors))


def _batch_shapes(net: torch.nn.Module, examples: tuple[Any, ...], batch: Any) -> tuple[Any, ...]:
    """torch.export's dynamic shapes, a batch axis per input, laid out as ``net.forward`` takes them: one
    per argument, or all in one tuple for a ``forward(*inputs)`` (a fold ensemble's)."""
    import inspect

    shapes = tuple({0: batch} for _ in examples)
    taken = [p.kind for p in inspect.signature(net.forward).parameters.values()]
    return (shapes,) if taken == [inspect.Parameter.VAR_POSITIONAL] else shapes


def _one_file(path: Path) -> None:
    """The torch.export-based exporter keeps large weights (a bag of words' table) in a file beside the
    model (``model.onnx.data``); the bundle ships one file, so they are moved inside it."""
    data = path.with_name(path.name + ".data")
    if not data.exists():
        return
    import onnx

    model = onnx.load(str(path))  # reads the weights from beside it
    onnx.save(model, str(path), save_as_external_data=False)
    data.unlink()


def _onnx_inputs(path: Path) -> list[dict[str, Any]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
    inputs = []
    for value in model.graph.input:
        tensor = value.type.tensor_type
        shape = ["batch" if d.dim_param else d.dim_value for d in tensor.shape.dim]
        inputs.append(
            {"name": value.name, "dtype": dtypes.get(tensor.elem_type, str(tensor.elem_type)), "shape": shape}
        )
    return inputs
