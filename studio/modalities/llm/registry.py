"""The language-model task and its network, registered where the spec can see them (pydantic only):
task ``llm_finetune`` (data kind ``llm``, trained on a stored table of examples) and the network
``lora`` whose settings name the base model and how it is adapted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from studio.bundle.layout import register_flavour
from studio.core.spec import ArchitectureInfo, StudioModel, _extra, register_architecture
from studio.core.tasks import TaskInfo, register_cli_defaults, register_profile_reader, register_task
from studio.modalities import register_lazily
from studio.modalities.llm.bundle import FLAVOUR

if TYPE_CHECKING:
    import pandas as pd

TASK = "llm_finetune"
KIND = FLAVOUR.kind
ARCHITECTURE = "lora"


class LoraParams(StudioModel):
    """A pretrained causal language model adapted with LoRA (or all its weights, for a small model)."""

    base_model: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        min_length=1,
        title="Base model",
        description="A model folder on this machine, or a Hugging Face id found in the local cache (downloaded "
        "only when STUDIO_ALLOW_DOWNLOADS=1).",
    )
    method: Literal["lora", "full"] = Field(
        "lora",
        title="Method",
        description="LoRA trains small extra matrices beside the frozen model (little memory, a small file); "
        "'full' trains every weight (small models only: about 16 bytes of memory per weight).",
        json_schema_extra=_extra(labels={"lora": "LoRA (adapter)", "full": "Full fine-tuning"}),
    )
    rank: int = Field(
        16,
        ge=1,
        le=512,
        title="LoRA rank",
        description="Size of the LoRA matrices: higher learns more, costs more memory.",
    )
    alpha: float = Field(
        32.0,
        gt=0.0,
        le=4096.0,
        title="LoRA alpha",
        description="Scale of the LoRA update (usually twice the rank).",
        json_schema_extra=_extra(advanced=True),
    )
    lora_dropout: float = Field(
        0.05,
        ge=0.0,
        le=0.9,
        title="LoRA dropout",
        description="Share of the LoRA inputs switched off at random while training.",
        json_schema_extra=_extra(advanced=True),
    )
    target_modules: str = Field(
        "auto",
        title="Adapted layers",
        description="'auto' picks the attention and MLP projections of the model's "
        "architecture; or a comma-separated list of layer names.",
        json_schema_extra=_extra(advanced=True),
    )
    load_in_4bit: bool = Field(
        False,
        title="4-bit base model (QLoRA)",
        description="Load the frozen base model in 4 bits (NF4, through bitsandbytes): about a quarter "
        "of its weights' memory. LoRA on one CUDA GPU only.",
        json_schema_extra=_extra(advanced=True),
    )
    max_length: int = Field(
        512,
        ge=16,
        le=32768,
        title="Most tokens per example",
        description="Longer examples are cut to this many tokens (the Data page says how "
        "many); memory and time grow with it.",
    )
    gradient_checkpointing: bool = Field(
        False,
        title="Gradient checkpointing",
        description="Recompute activations in the backward pass: much less memory for about 30% more time.",
        json_schema_extra=_extra(advanced=True),
    )
    max_new_tokens: int = Field(
        64,
        ge=1,
        le=4096,
        title="Most tokens per answer",
        description="How long the answers to the held-out prompts and test examples may be.",
        json_schema_extra=_extra(advanced=True),
    )
    sample_prompts: int = Field(
        3,
        ge=0,
        le=20,
        title="Prompts answered each epoch",
        description="Held-out prompts answered after every epoch and shown on the run page.",
        json_schema_extra=_extra(advanced=True),
    )
    merged: bool = Field(
        False,
        title="Bundle the merged model",
        description="Write the whole model (base with the adapter merged in) into the bundle "
        "instead of the adapter alone: large, but needs no base model to predict.",
        json_schema_extra=_extra(advanced=True),
    )


register_task(
    TaskInfo(
        TASK,
        KIND,
        "Fine-tune a language model",
        False,
        "tabular",
        ARCHITECTURE,
        unit="examples",
        uses_feature_columns=False,
        learns="answers prompts the way your examples do",
        metrics=("val/loss", "val/perplexity"),
        spec_defaults={
            "training": {"precision": "bf16-mixed", "epochs": 3, "batch_size": 8},
            "early_stopping": {"patience": 2},
            "scheduler": {"name": "cosine"},
            "optimizer": {"weight_decay": 0.0},
        },
    )
)
register_flavour(FLAVOUR)
register_lazily(KIND, "studio.modalities.llm.modality")
register_architecture(
    ArchitectureInfo(
        name=ARCHITECTURE,
        title="Pretrained language model (LoRA)",
        description="A pretrained causal language model fine-tuned on your examples with LoRA adapters (or "
        "fully, for a small model).",
        tasks=(TASK,),
        params_model=LoraParams,
        suggested_learning_rate=2e-4,
    )
)


def cli_defaults(data: dict, base_model: str | None, profile: dict) -> bool:
    """Fill a CLI spec for fine-tuning when a base model was named (``--base-model``, or ``--arch`` with a
    folder or Hub id): the task, the network, its base model and the answer column as the target. Returns
    whether it did."""
    from studio.core.spec import ARCHITECTURES
    from studio.modalities.llm.shapes import detect_shape

    if not base_model or base_model in ARCHITECTURES:
        return False
    data["task"] = TASK
    arch = data.setdefault("architecture", {})
    arch["name"] = ARCHITECTURE
    arch.setdefault("params", {})["base_model"] = base_model
    shape = detect_shape([c["name"] for c in profile.get("columns", [])])
    if shape is not None and not data["data"].get("target"):
        data["data"]["target"] = shape.answer
    return True


def add_reading(table: pd.DataFrame, profile: dict[str, Any], *, examples_file: bool) -> None:
    """Put the :func:`reading` of language-model examples into a table's profile, with the answer as
    the suggested target and fine-tuning as the suggested task (no table target is guessed for them)."""
    from studio.modalities.llm.shapes import reading

    found = reading(table, profile, examples_file=examples_file)
    if found is None:
        return
    profile["llm"] = found
    if "problem" not in found:
        profile["suggested_target"], profile["suggested_task"] = found["answer"], TASK


def describe(reading: dict[str, Any], dataset_id: str) -> list[str]:
    """What ``datasets add`` and ``datasets show`` print of a data set of language-model examples: its
    shape, fields, lengths and notes (no table target)."""
    lines = [f"language-model examples: {reading['description']}"]
    if reading.get("problem"):
        return [*lines, f"problem: {reading['problem']}"]
    from studio.modalities.llm.shapes import examples_notes, fields_in_words

    prompt, answer = fields_in_words(reading)
    lines.append(f"examples: {reading['examples']}; prompt: {prompt}; answer: {answer}")
    for what, key in (("prompt", "prompt_words"), ("answer", "answer_words")):
        stats = reading.get(key)
        if stats:
            lines.append(
                f"{what} words: median {stats['words_median']:.0f}, 90% at most {stats['words_p90']}, "
                f"longest {stats['words_max']}"
            )
    lines += [f"note: {note['message']} → {note['action']}" for note in examples_notes(reading)]
    lines.append(f"fine-tune with: python -m studio train --data {dataset_id} --base-model FOLDER_OR_ID")
    return lines


register_profile_reader(
    add_reading,
    key="llm",
    word="language-model examples",
    describe=describe,
    views="studio.modalities.llm.views",
)
register_cli_defaults(cli_defaults)
