"""The text bundle: the tabular runtime, the text runtime (and for a pretrained network the transformer
runtime with its tokenizer and configuration under ``files/``), the weights, and an ONNX file whose
inputs are the table part's numbers and category codes and the text's token ids."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.bundle.layout import _CORE, CODE_PREFIX, FILES_DIR, ONNX_FILE, RUNTIME_FILE, BundleFlavour
from studio.bundle.writer import (
    _example_rows,
    _finite_metrics,
    _public_version,
    check_finite_weights,
    write_kind_bundle,
)

if TYPE_CHECKING:
    import pandas as pd

    from studio.core.spec import RunSpec

_log = logging.getLogger(__name__)

KIND = "text"
TEXT_RUNTIME_FILE = f"{CODE_PREFIX}text_runtime.py"
TRANSFORMER_RUNTIME_FILE = f"{CODE_PREFIX}transformer_runtime.py"
FLAVOUR = BundleFlavour(
    KIND,
    needs="mlflow, torch and pandas (and transformers for a pretrained network)",
    code_files=f"`artifacts/{RUNTIME_FILE}` and `artifacts/{TEXT_RUNTIME_FILE}`: the preprocessing, the "
    f"reading of texts into tokens and the network code (a pretrained network adds `artifacts/"
    f"{TRANSFORMER_RUNTIME_FILE}`, with its tokenizer and configuration under `artifacts/{FILES_DIR}/`)",
)
"""Text bundles take raw table rows as table bundles do (registered by :mod:`.registry`)."""


def write_text_bundle(
    path: Path,
    *,
    spec: RunSpec,
    preprocessing: dict[str, Any],
    target: dict[str, Any],
    encoder: Any,
    net: Any,
    sample_rows: pd.DataFrame,
    metrics: dict[str, float],
) -> Path:
    """Write a text model bundle at ``path`` (see the module docstring) and return ``path``."""
    from studio.core.text_runtime import TEXT_RUNTIME_VERSION
    from studio.modalities.tabular.bundle import _ensemble_info

    state_dict = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    check_finite_weights(state_dict)
    pretrained = encoder.state["type"] != "hashing"
    text_state = dict(encoder.state)
    input_columns = [{"name": name, "kind": "text"} for name in text_state["columns"]] + [
        {"name": column["name"], "kind": group}
        for group in ("numeric", "datetime", "categorical")
        for column in preprocessing[group]
    ]
    requirements, versions = [], {}
    if pretrained:
        import transformers

        versions["transformers"] = _public_version(transformers.__version__)
        requirements.append(f"transformers=={versions['transformers']}")

    def runtimes_and_onnx(staging: Path) -> dict[str, Any]:
        shutil.copyfile(_CORE / "text_runtime.py", staging / TEXT_RUNTIME_FILE)
        if pretrained:
            from studio.core.transformer_runtime import save_files

            shutil.copyfile(_CORE / "transformer_runtime.py", staging / TRANSFORMER_RUNTIME_FILE)
            save_files(net, encoder, staging / FILES_DIR)
        return {"onnx": _try_export_text_onnx(net, staging / ONNX_FILE, preprocessing, text_state, target)}

    info = {
        "kind": KIND,
        "task": spec.task,
        "target": target,
        "input_columns": input_columns,
        "preprocessing": preprocessing,
        "text": text_state,
        "network": dict(net.config),
        **_ensemble_info(net.config),
        "predictor": {"module": "text_runtime", "class": "TextPredictor"},
        "metrics": _finite_metrics(metrics),
        "spec": spec.model_dump(mode="json"),
        "example_rows": _example_rows(sample_rows, [c["name"] for c in input_columns]),
        "text_runtime_version": TEXT_RUNTIME_VERSION,
    }
    return write_kind_bundle(
        path, info, state_dict, requirements=requirements, extra=runtimes_and_onnx, library_versions=versions
    )


def _without_embedding_bags(net: Any) -> Any:
    """``net`` with each bag of words pooling through an embedding lookup and a masked mean instead of
    ``nn.EmbeddingBag`` (the same numbers, from the same weights), which the TorchScript exporter cannot
    write. So a text network is exported the way a table's is, in ~0.3 CPU-s, instead of by torch.export
    and onnxscript (~5 CPU-s on a worker's first export, ~2 after it), at the end of every run."""
    from studio.core.text_runtime import BagOfWordsNet

    for module in net.modules():
        if isinstance(module, BagOfWordsNet):
            module.plain = False
    return net


def _try_export_text_onnx(
    net: Any, path: Path, preprocessing: dict[str, Any], text_state: dict[str, Any], target: dict[str, Any]
) -> dict[str, Any]:
    """Export the network alone (inputs ``numeric``, ``categorical``, ``text``; output ``output``) with a
    dynamic batch axis; a failure is described, not raised (the bundle works without ONNX)."""
    import copy

    import torch

    from studio.bundle.onnx import _exported, export_inputs, graph_output
    from studio.core.runtime import TabularPreprocessor
    from studio.modalities.tabular.bundle import _ensemble_note

    pre = TabularPreprocessor(preprocessing)
    length = int(text_state.get("max_tokens") or text_state.get("max_length"))
    examples = (
        torch.zeros(2, pre.n_numeric),
        torch.zeros(2, len(pre.cardinalities), dtype=torch.long),
        torch.ones(2, length, dtype=torch.long),
    )
    model, output = graph_output(_without_embedding_bags(copy.deepcopy(net).cpu().float().eval()), target)
    return _exported(
        lambda: export_inputs(model, path, examples, ["numeric", "categorical", "text"], exporter="auto"),
        path,
        net.config["n_out"],
        "Inputs: 'numeric' and 'categorical' from TabularPreprocessor(preprocessing).transform(rows) in "
        "training_studio_runtime.py, 'text' the token ids of the text columns from the encoder in "
        "training_studio_text_runtime.py (state: 'text'), padded to its length. "
        + output
        + _ensemble_note(net.config, bool(target.get("log_scale"))),
    )
