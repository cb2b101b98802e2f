"""Where a base language model comes from, what the form suggests, and how much memory a run needs.

A base model is a local folder, a model already in the Hugging Face cache, or a Hub id fetched only when
``STUDIO_ALLOW_DOWNLOADS=1`` (as for the pretrained text encoders, :mod:`studio.core.pretrained`); never
silently. The memory estimate adds up the weights, the trained parameters' gradients and AdamW state, the
activations at the run's batch and length (with or without gradient checkpointing) and the logits, from
the model's ``config.json`` alone. Cheap to import: nothing heavier than json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import TrainingError
from studio.core.pretrained import downloads_allowed, hf_hub_cache
from studio.modalities.llm import hub
from studio.modalities.llm.hub import human_bytes  # noqa: F401 (the kind's callers use models.human_bytes)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class Suggested:
    hub_id: str
    title: str
    parameters: float
    """Parameters, in billions."""
    note: str


CATALOGUE = (
    Suggested(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2 135M Instruct",
        0.135,
        "The smallest: trains on a CPU in minutes on a few hundred examples.",
    ),
    Suggested(
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "SmolLM2 360M Instruct",
        0.362,
        "Better answers than 135M; a GPU helps.",
    ),
    Suggested(
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen2.5 0.5B Instruct",
        0.494,
        "Many languages, good at following instructions; wants a GPU.",
    ),
    Suggested(
        "Qwen/Qwen2.5-1.5B-Instruct",
        "Qwen2.5 1.5B Instruct",
        1.54,
        "The largest suggested: clearly better answers; wants a GPU with 8 GB or more.",
    ),
)


def is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


def _from_cache(hub_id: str) -> Path | None:
    """The cached snapshot of ``hub_id`` (``refs/main``'s, else the newest) when it holds a model, read as
    ``from_pretrained`` reads it offline. (huggingface_hub's ``snapshot_download(local_files_only=True)``
    refuses a snapshot that holds only some of the repository's files, which is what the studio downloads.)"""
    repo = hf_hub_cache() / f"models--{hub_id.replace('/', '--')}"
    if "/" not in hub_id or not repo.is_dir():
        return None
    main = repo / "refs" / "main"
    try:
        folder = repo / "snapshots" / main.read_text(encoding="utf-8").strip()
        if is_model_folder(folder):
            return folder
    except (OSError, ValueError):
        pass
    try:
        snapshots = sorted((repo / "snapshots").iterdir(), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError:
        return None
    return next((folder for folder in snapshots if is_model_folder(folder)), None)


def find_base_model(ref: str) -> Path | None:
    """The folder of ``ref`` (a folder, or a Hub id in the cache) on this machine, or ``None``."""
    ref = str(ref).strip()
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    return node_copy(ref) or _from_cache(ref)


COPIES_ENV = "STUDIO_BASE_MODEL_COPIES"
"""On a Ray node: ``{ref: folder}`` of the base-model folders fetched into the node's own files (JSON;
:mod:`studio.modalities.llm.ship`)."""


def node_copy(ref: str) -> Path | None:
    """A Ray node's copy of the base-model folder ``ref`` sent from the studio's machine, if any."""
    copies = json.loads(os.environ.get(COPIES_ENV) or "{}")
    found = copies.get(str(ref).strip())
    return Path(found) if found and Path(found).is_dir() else None


def locate_base_model(ref: str, say: Any = None) -> Path:
    """The base model's folder: a local folder, the Hugging Face cache, or (``STUDIO_ALLOW_DOWNLOADS=1``)
    the Hub, after ``say`` (default: the log) was told which files come and how big
    (:func:`studio.modalities.llm.hub.download_plan`; exactly those files are fetched). A
    :class:`TrainingError` in one sentence otherwise (nothing is downloaded unasked)."""
    if say is None:
        import logging

        say = logging.getLogger("studio.llm").info
    ref = str(ref).strip()
    if not ref:
        raise TrainingError("Say which base model to fine-tune: a model folder, or a Hugging Face id.")
    found = find_base_model(ref)
    if found is not None:
        check_causal_lm(found)
        return found
    looks_like_id = hub.looks_like_hub_id(ref)
    if looks_like_id and downloads_allowed():
        plan = hub.download_plan(ref)  # one plain sentence when offline or unknown; what comes, and how big
        say(plan.sentence())
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(ref, cache_dir=str(hf_hub_cache()), allow_patterns=plan.names))
        except Exception as err:  # the network went away, the disk filled up
            raise TrainingError(
                f"Downloading '{ref}' from the Hugging Face Hub stopped ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160] if str(err) else 'no detail'}); nothing was trained."
            ) from None
        check_causal_lm(folder)
        return folder
    if looks_like_id:
        raise TrainingError(
            f"The model '{ref}' is not on this machine (not in the Hugging Face cache at {hf_hub_cache()}) and "
            "downloads are off: download it on a machine that is online and copy its folder here, or set "
            "STUDIO_ALLOW_DOWNLOADS=1 to let the studio fetch it."
        )
    raise TrainingError(f"There is no model folder at '{ref}'.")


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise TrainingError(
            f"The folder '{folder}' holds no readable config.json, so it is not a model."
        ) from None
    return (
        config.get("text_config", config)
        if "text_config" in config and "hidden_size" not in config
        else config
    )


def check_causal_lm(folder: Path) -> None:
    """A plain sentence when the folder is not a causal language model (text generation) with weights."""
    folder = Path(folder)
    config = read_config(folder)
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    causal_names = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
    causal = any(str(a).endswith(causal_names) for a in architectures)
    if not architectures and model_type:  # no architecture named: what the model type's causal LM would be
        try:
            from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

            causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        except ImportError:
            causal = False
    if not causal:
        what = ", ".join(map(str, architectures)) or model_type or "unknown"
        raise TrainingError(
            f"The model in '{folder}' is not a language model that writes text (it is {what}); choose a causal "
            "language model, such as an instruct model."
        )
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise TrainingError(f"The model folder '{folder}' holds no weights (model.safetensors).")


# --------------------------------------------------------------------------- sizes and memory
def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of a decoder-only transformer from its configuration (Llama, Qwen, Mistral shapes)."""
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 0)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 0)
    vocab = int(config.get("vocab_size") or 0)
    inter = int(config.get("intermediate_size") or 4 * hidden)
    heads = int(config.get("num_attention_heads") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // max(heads, 1))
    attention = hidden * head_dim * (heads * 2 + kv_heads * 2)
    mlp = 3 * hidden * inter
    embed = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return layers * (attention + mlp + 2 * hidden) + embed + hidden


TARGETS = {
    # model_type -> the layers LoRA adapts (attention and MLP projections)
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}


def target_modules(config: dict[str, Any], asked: str = "auto") -> list[str] | str:
    """The layer names LoRA adapts: the asked comma-separated list, the architecture's projections, or
    peft's ``all-linear`` for an architecture the studio does not know."""
    if asked and asked.strip().lower() != "auto":
        return [name.strip() for name in asked.split(",") if name.strip()]
    return TARGETS.get(str(config.get("model_type")), "all-linear")


def lora_parameter_count(config: dict[str, Any], rank: int, targets: list[str] | str) -> int:
    """Parameters of the LoRA matrices: ``rank × (in + out)`` per adapted layer."""
    hidden = int(config.get("hidden_size") or 0)
    layers = int(config.get("num_hidden_layers") or 0)
    inter = int(config.get("intermediate_size") or 4 * hidden)
    heads = int(config.get("num_attention_heads") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // max(heads, 1))
    shapes = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    names = list(shapes) if isinstance(targets, str) else targets
    per_layer = sum(sum(shapes.get(n, (hidden, hidden))) for n in names)
    return rank * per_layer * layers


@dataclass
class MemoryEstimate:
    weights: int
    trainable_parameters: int
    adapter: int
    """Bytes of the trained parameters' own copies (LoRA matrices in 32-bit; 0 for full fine-tuning,
    whose trained parameters are the weights)."""
    gradients: int
    optimizer: int
    activations: int
    logits: int
    total: int = 0

    def __post_init__(self) -> None:
        self.total = (
            self.weights + self.adapter + self.gradients + self.optimizer + self.activations + self.logits
        )

    def parts(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "LoRA parameters": self.adapter,
            "gradients": self.gradients,
            "optimiser state": self.optimizer,
            "activations": self.activations,
            "logits": self.logits,
        }


def estimate_memory(
    config: dict[str, Any],
    *,
    method: str,
    rank: int,
    targets: list[str] | str,
    batch_size: int,
    length: int,
    checkpointing: bool,
    weight_bytes: int,
    four_bit: bool = False,
) -> MemoryEstimate:
    """Bytes a run needs on its device. ``weight_bytes``: 2 for bfloat16 weights (GPU), 4 for 32-bit.
    ``four_bit`` (QLoRA): the transformer blocks' weights take :data:`NF4_BYTES` each, the embeddings
    and the output layer (which bitsandbytes leaves alone) ``weight_bytes``.

    Activations follow Korthikanti et al. (2022) for a layer without recomputation, about ``B·L·H·34``
    bytes in 16 bits plus ``5·heads·B·L²`` for the attention scores (with PyTorch's fused attention the
    scores are not kept, so they are left out); with gradient checkpointing only each layer's input
    (``2·B·L·H`` bytes) is kept, plus one layer's full activations while it is recomputed. 32-bit doubles
    them. The logits (``B·L·vocab`` in 32 bits, kept with their gradient) are separate: with a large
    vocabulary they are the biggest activation."""
    params = parameter_count(config)
    hidden = int(config.get("hidden_size") or 0)
    layers = int(config.get("num_hidden_layers") or 0)
    vocab = int(config.get("vocab_size") or 0)
    scale = weight_bytes / 2
    tokens = batch_size * length
    per_layer = int(34 * tokens * hidden * scale)
    activations = (
        (2 * tokens * hidden * layers * int(scale) + per_layer) if checkpointing else per_layer * layers
    )
    logits = 2 * tokens * vocab * 4
    if method == "full":
        trainable = params
        return MemoryEstimate(params * 4, trainable, 0, trainable * 4, trainable * 8, activations, logits)
    trainable = lora_parameter_count(config, rank, targets)
    weights = params * weight_bytes
    if four_bit:
        embed = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
        weights = int((params - embed) * NF4_BYTES + embed * weight_bytes)
    return MemoryEstimate(
        weights, trainable, trainable * 4, trainable * 4, trainable * 8, activations, logits
    )


NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
"""Bytes a weight takes in 4-bit NF4 with double quantisation: 4 bits, plus an 8-bit scale per block of
64 weights, plus a 32-bit scale per 256 of those (Dettmers et al., 2023)."""


def four_bit_problem(params: dict[str, Any], *, cuda: bool, devices: int = 1) -> str | None:
    """Why a run asking for a 4-bit base model (QLoRA) cannot have it here, in one sentence; ``None``
    when it can (or does not ask). bitsandbytes is looked for, never imported."""
    import importlib.util

    if not params.get("load_in_4bit"):
        return None
    if params.get("method") != "lora":
        return "A 4-bit base model trains a LoRA adapter only: choose the LoRA method, or turn 4-bit off."
    if params.get("merged"):
        return (
            "A 4-bit base model cannot be bundled merged: turn 'Bundle the merged model' off (the run page "
            "makes the merged model from the adapter afterwards, in full precision)."
        )
    if not cuda:
        return (
            "A 4-bit base model (QLoRA) needs a CUDA GPU (bitsandbytes computes in 4 bits there only), "
            "and this run has none: turn 4-bit off to train in 32 bits on this machine."
        )
    if devices > 1:
        return "A 4-bit base model (QLoRA) trains on one GPU for now: set Devices to 1, or turn 4-bit off."
    if importlib.util.find_spec("bitsandbytes") is None:
        return (
            "A 4-bit base model (QLoRA) needs the bitsandbytes package, which is not installed: "
            "pip install -r requirements-gpu.txt, or turn 4-bit off."
        )
    return None


CPU_FLOPS = float(os.environ.get("STUDIO_CPU_FLOPS", 2e10))
"""What one CPU does in a second on these networks' matrix products, for the time guess (20 GFLOP/s;
``STUDIO_CPU_FLOPS`` overrides it)."""


def cpu_seconds_per_epoch(config: dict[str, Any], tokens: int, method: str) -> float:
    """A rough time for one epoch on a CPU: ``4 × parameters`` operations a token for LoRA (forward and
    the backward pass through the frozen weights), ``6 ×`` for full fine-tuning."""
    params = parameter_count(config)
    return (6 if method == "full" else 4) * params * tokens / CPU_FLOPS


def fits_message(estimate: MemoryEstimate, available: int | None, device: str) -> str | None:
    """The refusal when a run cannot fit in ``available`` bytes (``None`` when it fits or is unknown)."""
    if available is None or estimate.total <= 0.95 * available:
        return None
    biggest = max(estimate.parts().items(), key=lambda kv: kv[1])
    return (
        f"This run needs about {human_bytes(estimate.total)} of memory and {device} has "
        f"{human_bytes(available)}; the most goes to {biggest[0]} ({human_bytes(biggest[1])}): lower the batch "
        "size or the most tokens per example, turn on gradient checkpointing, or use LoRA or a smaller model."
    )


def token_counter(folder: Path) -> Any:
    """A function from an example (:class:`studio.modalities.llm.shapes.Example`) to its token count with
    the model's tokenizer (its ``tokenizer.json`` through the ``tokenizers`` library: no torch, no
    transformers), counting the prompt's and the answer's text and a few tokens of chat format per
    message; ``None`` when the folder has no ``tokenizer.json``."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))

    def count(example: Any) -> int:
        texts = [m["content"] for m in example.messages] + [example.answer]
        encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
        return sum(len(e.ids) for e in encoded) + 4 * (len(example.messages) + 1)

    return count


def device_memory_now() -> tuple[int | None, str, bool]:
    """The memory a run may use here (bytes), the device in words and whether it is a GPU, without
    importing torch (``nvidia-smi`` for a GPU, psutil for the machine)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "":
        try:
            out = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.total,name", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[0]
            )
            mib, name = out.split(",", 1)
            return int(float(mib)) * 2**20, f"the GPU ({name.strip()})", True
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    try:
        import psutil

        return int(psutil.virtual_memory().available), "this machine's free memory", False
    except ImportError:
        return None, "this machine", False


def where_it_comes_from(ref: str) -> tuple[str | None, bool]:
    """The sentence the Train form and the terminal show about the base model ``ref`` before a run, and
    whether it stops the run: ``(None, False)`` for a local folder; "already on this machine" for a Hub id
    in the Hugging Face cache; what a download fetches and how big when downloads are allowed; why not,
    in one sentence, otherwise (the Hub is asked only then: :mod:`studio.modalities.llm.hub`)."""
    ref = str(ref).strip()
    if not ref:
        return None, False
    found = find_base_model(ref)
    if found is not None:
        if hub.looks_like_hub_id(ref):
            return (
                f"The base model '{ref}' is already on this machine (in the Hugging Face cache): nothing is "
                "downloaded.",
                False,
            )
        return None, False
    if not hub.looks_like_hub_id(ref):
        return f"There is no model folder at '{ref}'.", True
    if not downloads_allowed():
        suggested = next((s for s in CATALOGUE if s.hub_id == ref), None)
        size = f" ({suggested.parameters:g} billion parameters)" if suggested else ""
        return (
            f"The base model '{ref}'{size} is not on this machine (not in the Hugging Face cache at {hf_hub_cache()}) "
            "and downloads are off: download it on a machine that is online and give its folder here, or set "
            "STUDIO_ALLOW_DOWNLOADS=1 to let the studio fetch it.",
            True,
        )
    try:
        return hub.download_plan(ref).sentence(), False
    except TrainingError as err:
        return str(err), True


def say_where_it_comes_from(spec: Any) -> None:
    """For ``python -m studio train``: a fine-tuning spec's :func:`where_it_comes_from` on stderr, before
    anything is downloaded; a :class:`TrainingError` (one line, exit 2) when it stops the run. Other specs:
    nothing."""
    import sys

    base = dict(spec.architecture.params or {}).get("base_model")  # (only a language model's spec has one)
    if not base:
        return
    note, blocks = where_it_comes_from(base)
    if blocks and note:
        raise TrainingError(note)
    if note:
        print(note, file=sys.stderr, flush=True)
