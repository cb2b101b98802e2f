"""The language-model data kind (task ``llm_finetune``): a stored table of examples (prompt/response,
chats or plain text, :mod:`studio.modalities.llm.shapes`) fine-tunes a pretrained causal language model
(:mod:`lightning_modules.llm.module`). Everything is checked before a run exists: the data's shape, empty
answers, the base model (a causal LM with weights), a chat template for chat data, and whether the run fits
the device's memory (:mod:`studio.modalities.llm.models`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from studio import tracking
from studio.core.errors import DatasetError, TrainingError
from studio.modalities import register
from studio.modalities.llm.registry import KIND

SAMPLES_ARTIFACT = "llm/samples.json"
"""The held-out prompts' answers after each epoch (``mlflow.log_table``), for the run page."""
TEST_ANSWERS_ARTIFACT = "llm/test_answers.json"
TAG_BASE_MODEL = "studio.llm_base_model"
TAG_SHAPE = "studio.llm_shape"
TAG_MEMORY = "studio.llm_memory_estimate"
_log = logging.getLogger(__name__)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """A seeded split with at least one validation and one test example (from 3 examples up)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = max(1, round(n * val_fraction)) if n >= 3 else 0
    n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
    return {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}


def device_memory(accelerator: str) -> tuple[int | None, str]:
    """The memory the run may use (bytes) and the device in words."""
    import torch

    if accelerator == "gpu" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        return int(total), f"the GPU ({torch.cuda.get_device_name(0)})"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "this machine's free memory"
    except ImportError:
        return None, "this machine"


@dataclass
class PreparedLLM:
    data: Any
    folder: Path
    tokenizer: Any
    shape: Any
    bf16_weights: bool
    estimate: Any
    cut: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    module: Any = None

    def run_tags(self, precision: str) -> dict[str, str]:
        from studio.modalities.llm.models import human_bytes
        from studio.modalities.llm.ship import origin_of

        return {
            TAG_BASE_MODEL: origin_of(self.folder) or str(self.folder),  # (a Ray node's copy: the original)
            TAG_SHAPE: self.shape.kind,
            TAG_MEMORY: human_bytes(self.estimate.total),
            tracking.TAG_PRECISION: precision,
        }

    def lightning_module(self, spec: Any, steps_per_epoch: int, accumulate: int) -> Any:
        from lightning_modules.llm.module import LLMLightningModule, Settings, load_model

        params = spec.architecture.params
        from studio.modalities.llm.models import read_config, target_modules

        targets = target_modules(read_config(self.folder), params["target_modules"])
        net = load_model(self.folder, params, bf16_weights=self.bf16_weights, targets=targets)
        val = self.data.splits["val"]
        samples = [e for e in val if e.prompt][: int(params["sample_prompts"])]
        settings = Settings(
            learning_rate=spec.optimizer.learning_rate,
            weight_decay=spec.optimizer.weight_decay,
            scheduler=spec.scheduler.name,
            max_epochs=spec.training.epochs,
            steps_per_epoch=steps_per_epoch,
            accumulate=accumulate,
            gradient_clip=spec.training.gradient_clip,
            max_new_tokens=int(params["max_new_tokens"]),
            adapter_only=params["method"] == "lora",
            samples=samples,
        )
        module = LLMLightningModule(net, self.tokenizer, settings)
        module.on_samples = log_samples_live
        self.module = module
        return module

    def after_test(self, run_id: str, spec: Any, module: Any) -> None:
        client = tracking.client()
        if module.samples:
            client.log_table(run_id, pd.DataFrame(module.samples), SAMPLES_ARTIFACT)
        if module.test_answers:
            client.log_table(run_id, pd.DataFrame(module.test_answers), TEST_ANSWERS_ARTIFACT)

    def load_bundled(self, module: Any, state: dict[str, Any], bundle: Any) -> None:
        """Put a bundle's trained weights into a fresh ``module`` (a search's chosen trial is tested from
        its bundle): the LoRA parameters of an adapter bundle (``state``: every trained parameter, under
        the module's names), or the whole model of a merged or fully fine-tuned one (the safetensors in
        the zip ``bundle``; into a LoRA network's base, with the adapter's B matrices zeroed, so the
        network computes the merged model exactly)."""
        import torch
        from safetensors.torch import load as load_safetensors

        net = module.net
        if state:
            missing = {n for n, p in net.named_parameters() if p.requires_grad} - set(state)
            unexpected = net.load_state_dict(state, strict=False).unexpected_keys
            if missing or unexpected:
                raise TrainingError(
                    f"The bundle's adapter does not fit this model ({len(missing)} missing, "
                    f"{len(unexpected)} unknown weights)."
                )
            return
        whole: dict[str, Any] = {}
        for name in bundle.namelist():
            if "/files/merged/" in name and name.endswith(".safetensors"):
                whole.update(load_safetensors(bundle.read(name)))
        if not whole:
            raise TrainingError("The bundle holds neither an adapter nor a whole model.")
        target = net.get_base_model() if hasattr(net, "get_base_model") else net
        own = set(target.state_dict())
        renamed = {}  # a layer LoRA wraps keeps its weight as '<layer>.base_layer.weight'
        for key, tensor in whole.items():
            layer, _, leaf = key.rpartition(".")
            wrapped = f"{layer}.base_layer.{leaf}"
            renamed[wrapped if key not in own and wrapped in own else key] = tensor
        result = target.load_state_dict(renamed, strict=False)
        missing = {k for k in result.missing_keys if ".lora_" not in k and not k.endswith("lm_head.weight")}
        if missing or result.unexpected_keys:  # (lm_head may be tied to the embeddings)
            raise TrainingError("The bundle's model does not fit the base model it names.")
        with torch.no_grad():
            for name, parameter in net.named_parameters():
                if ".lora_B." in name:
                    parameter.zero_()

    def write_bundle(self, folder: Path, spec: Any, module: Any, metrics: dict[str, float]) -> Path:
        from studio.modalities.llm.bundle import write_llm_bundle

        return write_llm_bundle(
            folder / "model.zip",
            spec=spec,
            module=module,
            base_folder=self.folder,
            shape=self.shape,
            metrics=metrics,
        )

    def add_to_result(self, result: Any) -> None:
        result.dropped_rows = sum(self.dropped.values())

    def notes(self) -> list[str]:
        out = []
        if self.cut:
            out.append(
                f"{self.cut:,} examples were longer than the most tokens per example and were cut to it."
            )
        if self.dropped.get("empty"):
            out.append(f"{self.dropped['empty']:,} examples with an empty answer were left out.")
        if self.dropped.get("long_prompt"):
            out.append(
                f"{self.dropped['long_prompt']:,} examples whose prompt alone fills the most tokens per "
                "example were left out."
            )
        return out


def log_samples_live(module: Any) -> None:
    """Log the held-out prompts' answers so far to the run while it trains (the reporter's metric buffer
    knows the run)."""
    for callback in module.trainer.callbacks:
        buffer = getattr(getattr(callback, "log_metrics", None), "__self__", None)
        run_id = getattr(buffer, "run_id", None)
        if run_id:
            epoch = module.samples[-1]["epoch"] if module.samples else 0
            rows = [r for r in module.samples if r["epoch"] == epoch]
            try:  # one table per epoch (log_table would download and rewrite one growing table each time)
                tracking.client().log_table(run_id, pd.DataFrame(rows), f"llm/samples/epoch-{epoch:04d}.json")
            except Exception as err:  # the table is shown again at the end; a failed write never stops a run
                _log.warning("could not log the sample answers: %s", err)
            return


def _plan(spec: Any) -> Any:
    """Where the run trains (the engine's device plan has the same answer: a GPU unless told 'cpu')."""
    from types import SimpleNamespace

    import torch

    gpu = spec.training.device != "cpu" and torch.cuda.is_available()
    return SimpleNamespace(accelerator="gpu" if gpu else "cpu", precision=spec.training.precision)


def _devices(spec: Any) -> int:
    """How many devices the run asks for (``auto``: every visible GPU)."""
    import torch

    devices = spec.training.devices
    if devices == "auto":
        return max(1, torch.cuda.device_count())
    return int(devices)


class LLMModality:
    name = KIND
    search_batch_sizes = (4, 8, 16, 32)
    search_learning_rates = (2e-5, 2e-3)
    search_optimizers = ("adamw",)  # (SGD and plain Adam are not how adapters are trained)
    lr_find_refusal = (
        "The learning-rate finder does not fine-tune language models yet: start from the suggested 2e-4 (LoRA) "
        "or 2e-5 (full fine-tuning), or let the search try learning rates from 2e-5 to 2e-3."
    )

    def search_dimensions(self, spec: Any, networks: list[str] | None = None) -> list[Any]:
        from studio.modalities.llm.search import dimensions

        return dimensions(spec, networks)

    def device_plan(self, plan: Any) -> Any:
        """32-bit on a CPU; bfloat16 mixed on GPUs that have it, else 16-bit mixed."""
        import dataclasses

        import torch

        precision = plan.precision
        if plan.accelerator == "cpu":
            precision = "32-true"
        elif plan.precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            precision = "16-mixed"
        if dataclasses.is_dataclass(plan):
            return dataclasses.replace(plan, precision=precision)
        plan.precision = precision
        return plan

    def prepare(self, spec: Any, dataset: Any, table: pd.DataFrame, profile: dict[str, Any]) -> PreparedLLM:
        from lightning_modules.llm.module import LLMData, encode_example, has_chat_template, load_tokenizer
        from studio.modalities.llm.models import (
            cpu_seconds_per_epoch,
            estimate_memory,
            fits_message,
            four_bit_problem,
            locate_base_model,
            read_config,
            target_modules,
        )
        from studio.modalities.llm.shapes import check_examples, examples, shape_or_error

        params = spec.architecture.params
        shape = shape_or_error(list(table.columns), f"Data set '{dataset.id}'")
        found = examples(table, shape)
        check_examples(found, shape)
        folder = locate_base_model(params["base_model"])
        try:
            tokenizer = load_tokenizer(folder)
        except Exception as err:
            raise TrainingError(
                f"The tokenizer in '{folder}' cannot be read ({type(err).__name__})."
            ) from None
        if shape.kind == "chat" and not has_chat_template(tokenizer):
            raise TrainingError(
                f"The data is chats, but the tokenizer of '{params['base_model']}' has no chat template to write "
                "them with; choose an instruct (chat) model, or give the data as prompt and response columns."
            )
        plan = self.device_plan(_plan(spec))
        four_bit = four_bit_problem(params, cuda=plan.accelerator == "gpu", devices=_devices(spec))
        if four_bit:
            raise TrainingError(four_bit)
        max_length = int(params["max_length"])
        config = read_config(folder)
        context = int(config.get("max_position_embeddings") or 0)
        if context and max_length > context:  # the model reads no more than its context
            max_length = context
        dropped = {"empty": 0, "long_prompt": 0}
        encoded, cut = [], 0
        for example in found:
            if not example.answer:
                dropped["empty"] += 1
                continue
            item = encode_example(tokenizer, example.messages, example.answer, max_length)
            if item is None:
                dropped["long_prompt"] += 1
                continue
            cut += int(item.cut)
            encoded.append(item)
        if len(encoded) < 3:
            raise DatasetError(
                f"Only {len(encoded)} usable examples are left (of {len(found)}); fine-tuning needs at least 3."
            )
        parts = split_indices(len(encoded), spec.data.val_fraction, spec.data.test_fraction, spec.data.seed)
        splits = {name: [encoded[i] for i in idx] for name, idx in parts.items()}
        batch_size = int(spec.training.batch_size) or 8
        bf16_weights = plan.accelerator == "gpu" and plan.precision == "bf16-mixed"
        longest = max(len(e.input_ids) for e in encoded)
        estimate = estimate_memory(
            config,
            method=params["method"],
            rank=int(params["rank"]),
            targets=target_modules(config, params["target_modules"]),
            batch_size=batch_size,
            length=min(longest, max_length),
            checkpointing=bool(params["gradient_checkpointing"]),
            weight_bytes=2 if bf16_weights else 4,
            four_bit=bool(params.get("load_in_4bit")),
        )
        available, device = device_memory(plan.accelerator)
        refusal = fits_message(estimate, available, device)
        if refusal:
            raise TrainingError(refusal)
        if plan.accelerator == "cpu":
            tokens = sum(len(e.input_ids) for e in splits["train"])
            seconds = cpu_seconds_per_epoch(config, tokens, params["method"])
            _log.info("about %.0f s per epoch on the CPU", seconds)
        data = LLMData(splits, batch_size, tokenizer.pad_token_id, spec.data.seed)
        return PreparedLLM(data, folder, tokenizer, shape, bf16_weights, estimate, cut, dropped)

    def predict_file(self, bundle_zip: Path, info: dict[str, Any], data: Path) -> pd.DataFrame:
        """Answers to a CSV (or JSONL) of prompts: its columns plus ``answer``."""
        from studio.bundle.reader import load_bundle
        from studio.modalities.llm.shapes import looks_like_jsonl, read_jsonl

        raw = Path(data).read_bytes()
        if looks_like_jsonl(raw[:64], Path(data).name):
            frame = read_jsonl(raw, Path(data).name)
        else:
            import io

            frame = pd.read_csv(io.BytesIO(raw))
        with load_bundle(bundle_zip) as bundle:
            return bundle.model.predict(frame)


register(LLMModality())
