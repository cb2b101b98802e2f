"""What fetching a base model from the Hugging Face Hub would download, and how much, said before it starts.

The studio downloads a base model only when ``STUDIO_ALLOW_DOWNLOADS=1`` and never silently: the Train form
and ``python -m studio train`` first ask the Hub for the model's file list with sizes
(``HfApi().model_info(id, files_metadata=True)``, one small JSON request to ``HF_ENDPOINT``) and say which
files will come and how big they are in all. Only what a causal language model's ``from_pretrained`` reads
is counted, and :func:`studio.modalities.llm.models.locate_base_model` downloads exactly those files
(:func:`files_to_fetch`): the configuration, the generation configuration, the tokenizer's files and the
weights (safetensors; the ``.bin`` files only when the model has no safetensors), never the other formats
a repository may also hold (ONNX, GGUF, TensorFlow, the original checkpoint). Offline, or for an id the Hub
does not know, one plain sentence says so.

Cheap to import: ``huggingface_hub`` (about 0.2 s, most of it its HTTP client) is imported only when the Hub
is asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studio.core.errors import TrainingError

CONFIG_FILES = frozenset({"config.json", "generation_config.json"})
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "spiece.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
    }
)
SAFETENSORS = re.compile(r"model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json")
PYTORCH_BIN = re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json")

TIMEOUT = 10.0
"""Seconds the Hub has to answer the file list (a page waits on it)."""


@dataclass(frozen=True)
class DownloadPlan:
    """The files a download of ``hub_id`` fetches, with their sizes in bytes."""

    hub_id: str
    files: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(size for _, size in self.files)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.files]

    def sentence(self) -> str:
        big = sorted(self.files, key=lambda f: -f[1])
        shown = [f"{name} {human_bytes(size)}" for name, size in big[:3]]
        rest = len(big) - len(shown)
        if rest:
            shown.append(
                f"{rest} small file{'s' if rest != 1 else ''} ({human_bytes(sum(s for _, s in big[3:]))})"
            )
        return (
            f"Starting the run downloads '{self.hub_id}' from the Hugging Face Hub: {len(self.files)} "
            f"file{'s' if len(self.files) != 1 else ''}, {human_bytes(self.total)} in all ({', '.join(shown)}), into the Hugging Face cache."
        )


def files_to_fetch(siblings: dict[str, int]) -> dict[str, int]:
    """Of a repository's files (name → bytes), those a causal LM's ``from_pretrained`` and its tokenizer read:
    the top-level configuration and tokenizer files and the weights, safetensors when there are any, else
    PyTorch's ``.bin`` files."""
    top = {name: size for name, size in siblings.items() if "/" not in name}
    wanted = {name: size for name, size in top.items() if name in CONFIG_FILES or name in TOKENIZER_FILES}
    weights = {name: size for name, size in top.items() if SAFETENSORS.fullmatch(name)}
    if not any(name.endswith(".safetensors") for name in weights):
        weights = {name: size for name, size in top.items() if PYTORCH_BIN.fullmatch(name)}
    if "model.safetensors" in weights or "pytorch_model.bin" in weights:  # one file: no index needed
        weights = {n: s for n, s in weights.items() if not n.endswith(".index.json")}
    return {**wanted, **weights}


def download_plan(hub_id: str, timeout: float = TIMEOUT) -> DownloadPlan:
    """What downloading ``hub_id`` would fetch, asked of the Hub (``HF_ENDPOINT``). A :class:`TrainingError`
    in one sentence when the Hub cannot be reached, does not know the id, holds it behind a login, or the
    repository holds no causal language model's weights and configuration."""
    try:
        import httpx2 as http_errors  # huggingface_hub's HTTP client (2.x)
    except ImportError:  # pragma: no cover - an older huggingface_hub on requests
        import requests as http_errors  # type: ignore[no-redef]
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        info = HfApi().model_info(hub_id, files_metadata=True, timeout=timeout)
    except OfflineModeIsEnabled:
        raise TrainingError(
            f"The model '{hub_id}' is not on this machine and the Hugging Face Hub is switched off here "
            "(HF_HUB_OFFLINE is set): unset it, or download the model on a machine that is online and give "
            "its folder."
        ) from None
    except GatedRepoError:
        raise TrainingError(
            f"The model '{hub_id}' is gated on the Hugging Face Hub: accept its terms on its page and log in "
            "(huggingface-cli login, or HF_TOKEN), or choose another model."
        ) from None
    except RepositoryNotFoundError:
        raise TrainingError(
            f"The Hugging Face Hub has no model '{hub_id}' (or it is private): check the id, e.g. "
            "Qwen/Qwen2.5-0.5B-Instruct."
        ) from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        raise TrainingError(
            f"The Hugging Face Hub did not say what '{hub_id}' holds (it answered {status or 'an error'}); "
            "try again later, or download the model on another machine and give its folder."
        ) from None
    except (http_errors.HTTPError, OSError, ValueError) as err:  # no network, no DNS, a timeout
        raise TrainingError(
            f"The model '{hub_id}' is not on this machine and the Hugging Face Hub cannot be reached from it "
            f"({type(err).__name__}; the machine seems offline): download the model on a machine that is "
            "online and give its folder, or copy it into the Hugging Face cache."
        ) from None
    sizes = {}
    for sibling in info.siblings or []:
        size = sibling.size if sibling.size is not None else (sibling.lfs.size if sibling.lfs else None)
        sizes[sibling.rfilename] = int(size or 0)
    fetched = files_to_fetch(sizes)
    if "config.json" not in fetched or not any(n.endswith((".safetensors", ".bin")) for n in fetched):
        raise TrainingError(
            f"The Hugging Face repository '{hub_id}' holds no model in the transformers format (config.json "
            "and model.safetensors); choose a causal language model, such as an instruct model."
        )
    return DownloadPlan(hub_id, tuple(sorted(fetched.items())))


def looks_like_hub_id(ref: str) -> bool:
    """Whether ``ref`` reads as a Hub id (``org/name``) rather than a path."""
    from pathlib import Path

    ref = str(ref).strip()
    return ref.count("/") == 1 and not ref.startswith((".", "/", "~")) and not Path(ref).expanduser().exists()


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
