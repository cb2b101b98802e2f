"""The language-model bundle: the LoRA adapter (a few megabytes) with the tokenizer, naming the base model
it needs; or, with the ``merged`` setting (and always for full fine-tuning), the whole model. The shipped
``training_studio_llm_runtime.py`` (:mod:`studio.core.llm_runtime`) loads it without the studio,
through ``mlflow.pyfunc`` as every bundle: a table with a ``prompt`` column in, the same with ``answer``."""

from __future__ import annotations

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
    import peft
    import torch
    import transformers

    import studio

    params = spec.architecture.params
    net = module.net
    lora = params["method"] == "lora"
    merged = not lora or bool(params.get("merged"))
    adapter = {k: v.detach().cpu() for k, v in net.named_parameters() if v.requires_grad} if lora else {}
    check_finite_weights(adapter)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="studio-bundle-") as tmp:
        staging, model_dir = Path(tmp) / "files", Path(tmp) / "model"
        _stage(staging, {} if merged else adapter)
        shutil.copyfile(_CORE / "llm_runtime.py", staging / LLM_RUNTIME_FILE)
        files = staging / FILES_DIR
        module.tokenizer.save_pretrained(str(files / "tokenizer"))
        if merged:
            whole = net.merge_and_unload() if lora else net
            whole.config.use_cache = True
            whole.save_pretrained(str(files / "merged"))
            if lora:
                module.net = whole
        else:
            net.save_pretrained(str(files / "adapter"))
        hub_id = params["base_model"] if not Path(params["base_model"]).expanduser().exists() else None
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
                    "path": str(Path(base_folder).resolve()),
                    "id": hub_id or params["base_model"],
                },
                "method": params["method"],
                "merged": merged,
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
        requirements = _pip_requirements() + [
            f"transformers=={_public_version(transformers.__version__)}",
            f"peft=={_public_version(peft.__version__)}",
        ]
        _save_and_zip(path, info, staging, model_dir, requirements)
    return path
