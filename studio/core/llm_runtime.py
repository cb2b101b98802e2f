"""The language-model bundle's predictor: the base model with the run's LoRA adapter (or the merged
model) answering prompts, without the studio. The bundle ships this file as
``training_studio_llm_runtime.py``; it must never import ``studio``. The studio's training uses the same
prompt format and generation (``lightning_modules.llm.module``), so the bundle answers as the run did.

The bundle's ``files/`` folder holds the tokenizer and either ``adapter/`` (the LoRA adapter; the base
model it needs is named in ``studio_model.json`` → ``llm.base_model``: its folder when it was trained, its
Hugging Face id, found in the local cache, or the folder in ``STUDIO_LLM_BASE_MODEL``) or ``merged/``
(the whole model)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

PLAIN_PROMPT = "### Instruction:\n{prompt}\n\n### Response:\n"
"""The prompt format of a tokenizer without a chat template (one user message)."""
BASE_MODEL_ENV = "STUDIO_LLM_BASE_MODEL"
PROMPT_COLUMNS = ("prompt", "question", "query", "instruction", "input", "text")


def plain_prompt(messages: list[dict[str, str]]) -> str:
    if len(messages) == 1 and messages[0]["role"] == "user":
        return PLAIN_PROMPT.format(prompt=messages[0]["content"])
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant: "


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """What the model reads before it answers: the tokenizer's chat template, or the plain format."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return plain_prompt(messages)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    text = prompt_text(tokenizer, messages)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not getattr(tokenizer, "chat_template", None) and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    streamer: Any = None,
) -> list[str]:
    """Answers to prompts given as token ids (left-padded batches; greedy at temperature 0). A
    ``streamer`` (one prompt only) receives the answer's tokens as they are made."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    out: list[str] = []
    if temperature > 0:
        torch.manual_seed(seed)
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            longest = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for i, p in enumerate(chunk):
                ids[i, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
                mask[i, longest - len(p) :] = 1
            extra = (
                {"do_sample": True, "temperature": temperature, "top_p": top_p}
                if temperature > 0
                else {"do_sample": False}
            )
            made = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
                use_cache=True,
                streamer=streamer,
                **extra,
            )
            out.extend(tokenizer.decode(row, skip_special_tokens=True).strip() for row in made[:, longest:])
    finally:
        model.train(was_training)
    return out


def find_base_model(base: dict[str, Any]) -> Path:
    """The base model's folder: ``STUDIO_LLM_BASE_MODEL``, the folder it was trained from, or its id in the
    Hugging Face cache; a plain error naming what is needed otherwise."""
    candidates = [os.environ.get(BASE_MODEL_ENV, ""), base.get("path") or ""]
    for candidate in candidates:
        if candidate and (Path(candidate) / "config.json").is_file():
            return Path(candidate)
    hub_id = base.get("id") or ""
    if hub_id.count("/") == 1:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(hub_id, local_files_only=True))
        except Exception:  # e.g. a snapshot of the model's files only (what the studio downloads)
            pass
        try:
            from huggingface_hub import constants

            repo = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
            folder = repo / "snapshots" / (repo / "refs" / "main").read_text(encoding="utf-8").strip()
            if (folder / "config.json").is_file():
                return folder
        except (ImportError, OSError):
            pass
    raise FileNotFoundError(
        f"This model is an adapter for the base model '{hub_id or base.get('path')}', which is not on this "
        f"machine: put its folder at {base.get('path')!r}, set {BASE_MODEL_ENV} to its folder, or use the "
        "merged bundle."
    )


class LLMPredictor:
    """Answers prompts: ``predict_input`` takes a table with a prompt column (or a list of prompts) and
    returns it with an ``answer`` column; :meth:`answer` takes one prompt and the sampling settings."""

    def __init__(self, model: Any, tokenizer: Any, info: dict[str, Any]):
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.max_new_tokens = int(info["llm"].get("max_new_tokens", 64))

    @classmethod
    def load(
        cls, info: dict[str, Any], weights_path: str, modules: dict[str, Any], files: str | None
    ) -> LLMPredictor:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(files)
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        if (folder / "merged").is_dir():
            model = AutoModelForCausalLM.from_pretrained(str(folder / "merged"), dtype=dtype)
        else:
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(
                str(find_base_model(info["llm"]["base_model"])), dtype=dtype
            )
            model = PeftModel.from_pretrained(base, str(folder / "adapter"))
        return cls(model.to(device).eval(), tokenizer, info)

    @classmethod
    def from_parts(cls, model: Any, tokenizer: Any, info: dict[str, Any]) -> LLMPredictor:
        return cls(model, tokenizer, info)

    def answer(
        self,
        prompts: list[str] | str,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int | None = None,
        base: bool = False,
    ) -> list[str]:
        """Answers to prompts (one user message each). ``base=True`` answers with the base model alone
        (the adapter switched off), for a side-by-side comparison."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self._answer(prompts, base, temperature, top_p, max_new_tokens)

    def _answer(
        self,
        prompts: list[str],
        base: bool,
        temperature: float,
        top_p: float,
        max_new_tokens: int | None,
        streamer: Any = None,
    ) -> list[str]:
        ids = [prompt_ids(self.tokenizer, [{"role": "user", "content": p}]) for p in prompts]
        settings = {
            "max_new_tokens": int(max_new_tokens or self.max_new_tokens),
            "temperature": temperature,
            "top_p": top_p,
            "streamer": streamer,
        }
        if base and hasattr(self.model, "disable_adapter"):
            with self.model.disable_adapter():
                return generate(self.model, self.tokenizer, ids, **settings)
        return generate(self.model, self.tokenizer, ids, **settings)

    def stream(
        self,
        prompt: str,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int | None = None,
        base: bool = False,
    ) -> Iterator[str]:
        """The answer to one prompt, piece by piece as the model writes it (the same text as
        :meth:`answer`): generation runs in a thread that feeds ``transformers``' TextIteratorStreamer."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failed: list[BaseException] = []

        def write() -> None:
            try:
                self._answer([prompt], base, temperature, top_p, max_new_tokens, streamer=streamer)
            except BaseException as err:  # handed to the reader, who raises it
                failed.append(err)
                streamer.end()

        thread = threading.Thread(target=write, name="llm-stream", daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            thread.join()
        if failed:
            raise failed[0]

    def predict_input(self, rows: Any) -> pd.DataFrame:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame({"prompt": list(rows)})
        lowered = {str(c).strip().lower(): c for c in frame.columns}
        column = next((lowered[n] for n in PROMPT_COLUMNS if n in lowered), None)
        if column is None:
            if len(frame.columns) != 1:
                raise ValueError("the rows need a 'prompt' column: the prompts to answer")
            column = frame.columns[0]
        prompts = ["" if pd.isna(v) else str(v) for v in frame[column]]
        out = frame.copy()
        out["answer"] = self.answer(prompts) if prompts else []
        return out
