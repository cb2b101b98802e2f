"""The language-model kind's search space: the LoRA adapter's rank, alpha and dropout (with the learning
rate, batch size and weight decay that every search varies; the kind's ranges and AdamW alone are in
:class:`studio.modalities.llm.modality.LLMModality`), scored by default on the validation perplexity (the
task's main metric, exp of the validation loss: the same order, lower is better). Full fine-tuning
searches the learning rate, batch size and weight decay only. Cheap to import: the spec and the search
words."""

from __future__ import annotations

from typing import Any

from studio.core.search_dims import Dimension, choice, number

RANKS = (4, 8, 16, 32, 64)


def dimensions(spec: Any, networks: list[str] | None = None) -> list[Dimension]:
    from studio.modalities.llm.registry import LoraParams

    lora = ("architecture.params.method", ("lora",))
    return [
        choice(LoraParams, "rank", "architecture.params.rank", RANKS, when=lora),
        number(LoraParams, "alpha", "architecture.params.alpha", 4.0, 256.0, log=True, when=lora),
        number(LoraParams, "lora_dropout", "architecture.params.lora_dropout", 0.0, 0.2, when=lora),
    ]
