"""A tiny Llama-architecture model and a word-level tokenizer with a chat template, built by the tests
themselves (no downloads), and a fixed instruction set for them to learn."""

from __future__ import annotations

import json
from pathlib import Path

PAIRS = [
    ("what colour is the sky", "blue"),
    ("what colour is grass", "green"),
    ("what is the capital of france", "paris"),
    ("what is the capital of italy", "rome"),
    ("what is two plus two", "four"),
    ("what is three plus three", "six"),
    ("name a fruit", "apple"),
    ("name a pet", "cat"),
    ("say hello", "hello there friend"),
    ("say goodbye", "goodbye my friend"),
    ("what do bees make", "honey"),
    ("what do cows drink", "water"),
    ("which animal barks", "a dog"),
    ("which animal meows", "a cat"),
    ("opposite of hot", "cold"),
    ("opposite of up", "down"),
    ("count to three", "one two three"),
    ("first letter", "a"),
    ("last letter", "z"),
    ("what is ice", "frozen water"),
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


def words() -> list[str]:
    vocab: list[str] = []
    for prompt, answer in PAIRS:
        for word in f"{prompt} {answer} user assistant system : ### instruction response".split():
            if word not in vocab:
                vocab.append(word)
    return vocab


def build_tokenizer(folder: Path, chat_template: bool = True) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate([*specials, *words()])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_model(folder: Path, chat_template: bool = True, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden size 64) with a tokenizer, saved in ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder, chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with (
        torch.no_grad()
    ):  # an output layer as confident as a trained one's (the default 0.02 caps the logits near 1)
        model.lm_head.weight.normal_(0.0, 0.3)
    model.save_pretrained(str(folder))
    return folder


def write_pairs_csv(path: Path, repeat: int = 1) -> Path:
    import pandas as pd

    rows = [{"prompt": p, "response": a} for p, a in PAIRS] * repeat
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_chat_jsonl(path: Path, repeat: int = 1) -> Path:
    lines = repeat * [
        json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]})
        for p, a in PAIRS
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
