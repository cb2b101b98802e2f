"""The language-model bundle: the LoRA adapter (a few megabytes) with the tokenizer, naming the base model
it needs; or, with the ``merged`` setting (and always for full fine-tuning), the whole model. The shipped
``training_studio_llm_runtime.py`` (:mod:`studio.core.llm_runtime`) loads it without the studio,
through ``mlflow.pyfunc`` as every bundle: a table with a ``prompt`` column in, the same with ``answer``."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.bundle.layout import CODE_PREFIX, FILES_DIR, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, BundleFlavour
from studio.bundle.writer import (
    _finite_metrics,
    _pip_requirements,
    _public_version,
    _save_and_zip,
    _stage,
    check_finite_weights,
)
from studio.core.errors import BundleError, StudioError

_CORE = Path(__file__).resolve().parents[2] / "core"
LLM_RUNTIME_FILE = f"{CODE_PREFIX}llm_runtime.py"
KIND = "llm"


def _snippet_input(prompt: str) -> str:
    return (
        "# One row per prompt; the base model named in the bundle must be on this machine (or in the\n"
        "# Hugging Face cache) unless the bundle holds the merged model.\n"
        f"prompts = pd.DataFrame({{'prompt': [{prompt!r}]}})\n"
        "predictions = model.predict(prompts)  # the prompts with their answer\n"
    )


FLAVOUR = BundleFlavour(
    KIND,
    needs="mlflow, torch, pandas, transformers and peft",
    example_data="Summarise: the delivery came two days late but the phone works well.",
    snippet_input=_snippet_input,
    title=lambda info: f"a language model fine-tuned from `{info['llm']['base_model']['id']}`",
    predicts=lambda info: (
        "`predict` takes a DataFrame with a `prompt` column and returns it with the model's `answer` to each."
    ),
    info_holds="the base model it needs, how it was adapted, the prompt format, metrics and the run spec",
    code_files=f"`artifacts/{LLM_RUNTIME_FILE}`: loads the model and writes the answers; the tokenizer and "
    f"the adapter (or the merged model) are under `artifacts/{FILES_DIR}/`",
)
"""What the generic bundle code knows of language-model bundles (registered by :mod:`.registry`)."""


def write_llm_bundle(
    path: Path, *, spec: Any, module: Any, base_folder: Path, shape: Any, metrics: dict[str, float]
) -> Path:
    import mlflow
    import torch

    import studio

    params = spec.architecture.params
    net = module.net
    lora = params["method"] == "lora"
    merged = not lora or bool(params.get("merged"))
    adapter = {k: v.detach().cpu() for k, v in net.named_parameters() if v.requires_grad} if lora else {}
    check_finite_weights(adapter)
    from studio.modalities.llm.hub import looks_like_hub_id
    from studio.modalities.llm.ship import origin_of

    hub_id = params["base_model"] if looks_like_hub_id(params["base_model"]) else None
    origin = origin_of(base_folder)  # a folder a Ray node fetched: the studio machine's folder
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "task": spec.task,
        "target": {"name": "answer", "task": "generation"},
        "input_columns": [{"name": "prompt", "kind": "text"}],
        "predictor": {"module": "llm_runtime", "class": "LLMPredictor"},
        "weights": WEIGHTS_FILE,
        "onnx": {"file": None, "error": "language models are not exported to ONNX"},
        "llm": {
            "base_model": {
                "path": origin or str(Path(base_folder).resolve()),
                "id": hub_id or params["base_model"],
            },
            "method": params["method"],
            "merged": merged,
            "trained_on_4bit_base": bool(params.get("load_in_4bit")),
            "shape": shape.kind,
            "max_new_tokens": int(params["max_new_tokens"]),
            "chat_template": bool(getattr(module.tokenizer, "chat_template", None)),
            "trainable_parameters": int(sum(v.numel() for v in adapter.values())),
        },
        "metrics": _finite_metrics(metrics),
        "spec": spec.model_dump(mode="json"),
        "example_rows": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "studio_version": studio.__version__,
        "library_versions": {"mlflow": mlflow.__version__, "torch": _public_version(torch.__version__)},
    }
    if merged:
        whole = net.merge_and_unload() if lora else net
        if lora:
            module.net = whole
        return _zip_llm(path, info, module.tokenizer, whole, {})
    return _zip_llm(path, info, module.tokenizer, net, adapter)


def merge_llm_bundle(adapter_zip: Path, path: Path) -> Path:
    """The "merged" bundle of an adapter bundle: the base model with the LoRA weights merged in
    (``peft``'s ``merge_and_unload``), so it answers without the base model, as the adapter bundle does.
    The base model must be where the adapter bundle looks for it (its folder, ``STUDIO_LLM_BASE_MODEL`` or
    the Hugging Face cache)."""
    from studio.bundle.reader import load_bundle

    with load_bundle(adapter_zip) as bundle:
        info = json.loads(json.dumps(bundle.info))
        if info.get("kind") != KIND:
            raise BundleError("Only a fine-tuned language model has a merged version.")
        predictor = bundle.model.unwrap_python_model().predictor
        whole = predictor.model if info["llm"].get("merged") else predictor.model.merge_and_unload()
        info["llm"]["merged"] = True
        info["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return _zip_llm(Path(path), info, predictor.tokenizer, whole.float().cpu(), {})


def _zip_llm(path: Path, info: dict[str, Any], tokenizer: Any, net: Any, adapter: dict[str, Any]) -> Path:
    """Zip a language-model bundle: the adapter (``adapter`` holds its tensors) or, with ``adapter``
    empty, the whole model ``net``; the tokenizer; ``info`` as ``studio_model.json``."""
    import peft
    import transformers

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        staging, model_dir = Path(tmp) / "files", Path(tmp) / "model"
        _stage(staging, adapter)
        shutil.copyfile(_CORE / "llm_runtime.py", staging / LLM_RUNTIME_FILE)
        files = staging / FILES_DIR
        tokenizer.save_pretrained(str(files / "tokenizer"))
        if adapter:
            net.save_pretrained(str(files / "adapter"))
        else:
            net.config.use_cache = True
            net.save_pretrained(str(files / "merged"))
        requirements = _pip_requirements() + [
            f"transformers=={_public_version(transformers.__version__)}",
            f"peft=={_public_version(peft.__version__)}",
        ]
        _save_and_zip(path, info, staging, model_dir, requirements)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.modalities.llm.bundle ADAPTER.zip MERGED.zip``: write the merged bundle (the run
    page runs it in its own process: merging loads the whole model). A problem is one line on stderr,
    exit 2."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m studio.modalities.llm.bundle ADAPTER.zip MERGED.zip", file=sys.stderr)
        return 2
    try:
        merge_llm_bundle(Path(args[0]), Path(args[1]))
    except (StudioError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
