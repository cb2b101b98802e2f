"""Fine-tuning a causal language model: the model and tokenizer loaded for training (LoRA through
``peft``, or every weight), the examples turned into token ids with the loss on the answers only, the
DataModule, and the LightningModule (manual optimisation: accumulation and clipping happen here, as in
the other kinds' modules), which answers a few held-out prompts after every epoch and scores the test
examples by generating their answers (loss, perplexity, exact match, token-overlap F1).

With LoRA the module's ``state_dict`` holds the adapter's parameters only: the best epoch kept in
memory, the checkpoints and a resume carry a few megabytes, and the frozen base is read again from its
folder."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from studio.core.errors import TrainingError

IGNORE = -100


# --------------------------------------------------------------------------- model and tokenizer
def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def load_model(folder: Path, params: dict[str, Any], *, bf16_weights: bool, targets: list[str] | str) -> Any:
    """The base model, wrapped with LoRA adapters on the ``targets`` layers (``params['method'] == 'lora'``)
    or trained whole."""
    from transformers import AutoModelForCausalLM

    lora = params["method"] == "lora"
    dtype = torch.bfloat16 if (lora and bf16_weights) else torch.float32
    four_bit = lora and bool(params.get("load_in_4bit"))
    if four_bit:  # QLoRA: the frozen base in 4-bit NF4 on this GPU (checked before: CUDA, bitsandbytes)
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16_weights else torch.float16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype=dtype if bf16_weights else torch.float16,
            quantization_config=quantization,
            device_map={"": torch.cuda.current_device()},
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model.config.use_cache = False
    checkpointing = bool(params.get("gradient_checkpointing"))
    if four_bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(params["rank"]),
        lora_alpha=float(params["alpha"]),
        lora_dropout=float(params["lora_dropout"]),
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


# --------------------------------------------------------------------------- examples to tokens
from studio.core.llm_runtime import generate, plain_prompt, prompt_text  # noqa: E402,F401  (shared with the bundle)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_ids: list[int]
    prompt: str
    reference: str
    cut: bool = False


def chat_pieces(tokenizer: Any, conversation: list[dict[str, str]]) -> list[tuple[str, bool]] | None:
    """The chat template's text of a conversation cut into pieces, each marked whether it is learnt: every
    assistant message after the first message (with what the template closes it with), the rest not.
    ``None`` when the template does not render a conversation as the growing text of its turns (one that
    drops earlier turns' reasoning, say); then only the last answer is learnt."""
    pieces: list[tuple[str, bool]] = []
    rendered = ""
    for i, message in enumerate(conversation):
        if message["role"] != "assistant" or i == 0:
            continue
        prompt = tokenizer.apply_chat_template(conversation[:i], tokenize=False, add_generation_prompt=True)
        done = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
        if not (prompt.startswith(rendered) and done.startswith(prompt)):
            return None
        pieces += [(prompt[len(rendered) :], False), (done[len(prompt) :], True)]
        rendered = done
    return pieces


def encode_example(
    tokenizer: Any, messages: list[dict[str, str]], answer: str, max_length: int
) -> Encoded | None:
    """Token ids with labels on the answers (every assistant message of a chat; every token for plain
    text); ``None`` when the prompt before the last answer fills ``max_length``."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if not messages:  # plain text: continued training on every token
        ids = bos + _ids(tokenizer, answer) + eos
        cut = len(ids) > max_length
        ids = ids[:max_length]
        return Encoded(ids, list(ids), bos, "", answer, cut)
    prompt_labels: list[int] = []
    if has_chat_template(tokenizer):
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        pieces = chat_pieces(tokenizer, [*messages, {"role": "assistant", "content": answer}])
        if pieces is None:
            full = tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": answer}], tokenize=False
            )
            pieces = [(prompt, False), (full[len(prompt) :] if full.startswith(prompt) else answer, True)]
        prompt_ids = []
        for text, learnt in pieces[:-1]:  # earlier assistant answers are learnt too
            ids = _ids(tokenizer, text)
            prompt_ids += ids
            prompt_labels += ids if learnt else [IGNORE] * len(ids)
        answer_ids = _ids(tokenizer, pieces[-1][0])
        if eos and eos[0] not in answer_ids:
            answer_ids = answer_ids + eos
    else:
        prompt = plain_prompt(messages)
        prompt_ids = bos + _ids(tokenizer, prompt)
        prompt_labels = [IGNORE] * len(prompt_ids)
        answer_ids = _ids(tokenizer, answer) + eos
    if len(prompt_ids) >= max_length:
        return None
    ids = prompt_ids + answer_ids
    labels = prompt_labels + answer_ids
    cut = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], prompt_ids, prompt, answer, cut)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), longest), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# --------------------------------------------------------------------------- scores
def normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def exact_match(answer: str, reference: str) -> float:
    return float(normalise(answer) == normalise(reference))


def token_f1(answer: str, reference: str) -> float:
    """Overlap of the answer's words with the reference's (SQuAD's F1)."""
    a, r = normalise(answer).split(), normalise(reference).split()
    if not a or not r:
        return float(a == r)
    common = sum((Counter(a) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- data
class EpochShuffle:
    """A new order each epoch from ``seed + epoch`` (Lightning calls ``set_epoch``), so a resumed run sees
    the same batches in its later epochs as a straight run."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # noqa: ANN204
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def _shares(rows: list[int], parts: int) -> list[list[int]]:
    """``rows`` cut into ``parts`` nearly equal consecutive parts (the first ones one longer)."""
    size, extra = divmod(len(rows), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(rows[start:end])
        start = end
    return out


class Batches:
    """A split's padded batches (Lightning sets the training order's epoch through ``sampler``).

    With ``world`` > 1 processes training together (DDP), this is process ``rank``'s part:

    - training: every process draws the same order, cuts it into the same batches of ``batch_size``
      examples and keeps its own share of each, so an update still learns from ``batch_size`` examples
      and every process takes the same number of steps; a last batch with fewer examples than processes
      is left out.
    - validation and test: the ``rank``-th of ``world`` nearly equal parts of the split, in as many
      batches on every process (a short share ends with an empty batch, which the module skips); the
      module sums the losses over the processes."""

    def __init__(
        self, items: list[Encoded], batch_size: int, pad_id: int, *, shuffle: bool, seed: int,
        rank: int = 0, world: int = 1,
    ):  # fmt: skip
        self.items, self.batch_size, self.pad_id = items, batch_size, pad_id
        self.rank, self.world = rank, world
        self._order = EpochShuffle(len(items), seed) if shuffle else None
        if shuffle:  # what Lightning reads: it sets the epoch and sees a shuffled loader
            self.sampler, self.batch_sampler = self._order, None

    def __len__(self) -> int:
        n = len(self.items)
        if self.world == 1:
            return math.ceil(n / self.batch_size)
        if self._order is not None:
            full, rest = divmod(n, self.batch_size)
            return full + (1 if rest >= self.world else 0)
        return max(1, math.ceil(math.ceil(n / self.world) / self.batch_size))

    def _parts(self) -> list[list[int]]:
        order = list(self._order) if self._order is not None else list(range(len(self.items)))
        if self.world == 1:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self._order is not None:
            batches = [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]
            return [_shares(rows, self.world)[self.rank] for rows in batches]
        return _shares(_shares(order, self.world)[self.rank], len(self))

    def __iter__(self):  # noqa: ANN204
        for rows in self._parts():
            yield collate([self.items[i] for i in rows], self.pad_id) if rows else {}


class LLMData(pl.LightningDataModule):
    """The tokenised examples of each split; shuffled training batches (seeded), padded per batch.
    ``world_size`` (set by the engine before training, :func:`studio.engine.ddp.share_data`) is how
    many processes share them."""

    def __init__(self, splits: dict[str, list[Encoded]], batch_size: int, pad_id: int, seed: int):
        super().__init__()
        self.splits, self.batch_size, self.pad_id, self.seed = splits, int(batch_size), int(pad_id), seed
        self.world_size, self.rank = 1, 0

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(items) for name, items in self.splits.items()}

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self._loader("train", True)))

    def check_world_size(self) -> None:
        """A plain error when the training examples are too few to give every process one of a batch."""
        n, world = len(self.splits["train"]), self.world_size
        if world > 1 and (self.batch_size < world or n < world):
            raise TrainingError(
                f"{n} training examples in batches of {self.batch_size} are too few to share among {world} "
                "devices (each needs at least one example of every batch); use fewer devices or a larger "
                "batch size."
            )

    def setup(self, stage: str | None = None) -> None:
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        if world != self.world_size:
            raise RuntimeError(
                f"the DataModule was prepared for {self.world_size} process(es), the Trainer runs {world}"
            )
        self.rank = trainer.global_rank if trainer is not None else 0

    def _loader(self, name: str, shuffle: bool) -> Batches:
        return Batches(
            self.splits[name], self.batch_size, self.pad_id, shuffle=shuffle, seed=self.seed,
            rank=self.rank, world=self.world_size,
        )  # fmt: skip

    def train_dataloader(self) -> Batches:
        return self._loader("train", True)

    def val_dataloader(self) -> Batches:
        return self._loader("val", False)

    def test_dataloader(self) -> Batches:
        return self._loader("test", False)


# --------------------------------------------------------------------------- the module
@dataclass
class Settings:
    learning_rate: float
    weight_decay: float
    scheduler: str
    max_epochs: int
    steps_per_epoch: int
    accumulate: int = 1
    gradient_clip: float = 0.0
    max_new_tokens: int = 64
    adapter_only: bool = True
    samples: list[Encoded] = field(default_factory=list)


class LLMLightningModule(pl.LightningModule):
    def __init__(self, net: Any, tokenizer: Any, settings: Settings):
        super().__init__()
        self.net, self.tokenizer, self.settings = net, tokenizer, settings
        self.automatic_optimization = False
        self.accumulate = max(1, settings.accumulate)
        self.epoch_metrics: dict[str, float] = {}
        self.test_results: dict[str, float] = {}
        self.samples: list[dict[str, Any]] = []
        """The held-out prompts' answers after each epoch (epoch, prompt, reference, answer)."""
        self.test_answers: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._eval = [0.0, 0]
        self._tokens = 0
        self._epoch_started: float | None = None
        self.on_samples: Any = None
        """Called with each epoch's sample rows (the modality logs them to MLflow while the run goes on)."""

    # ---- the adapter's weights are the module's state (LoRA)
    def _trained_keys(self) -> set[str]:
        return {f"net.{name}" for name, p in self.net.named_parameters() if p.requires_grad}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        state = super().state_dict(*args, **kwargs)
        if not self.settings.adapter_only:
            return state
        keys = self._trained_keys()
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        return type(state)((k, v) for k, v in state.items() if k[len(prefix) :] in keys)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        if not self.settings.adapter_only:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        missing = self._trained_keys() - set(state_dict)
        if strict and missing:
            raise RuntimeError(
                f"the saved state lacks {len(missing)} adapter tensors, e.g. {sorted(missing)[0]}"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    # ---- several processes (DDP): every process sees the same losses and scores
    @property
    def distributed(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.world_size > 1

    def _summed(self, values: list[float], mean: bool = False) -> list[float]:
        """``values`` summed (or averaged) over every process with DDP; themselves otherwise. Every
        process must call it at the same point."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.trainer.strategy.reduce(tensor, reduce_op="mean" if mean else "sum").tolist()

    @property
    def _answers_here(self) -> bool:
        """Whether this process writes the held-out and test answers (rank 0 only: it logs them)."""
        return not self.distributed or self.trainer.global_rank == 0

    # ---- what the studio's callbacks read
    def pop_step_losses(self) -> list[float]:
        out, self._losses = self._losses, []
        return self._summed(out, mean=True) if out else out

    def pop_train_accuracy(self) -> None:
        return None

    def val_class_shares(self) -> list[float]:
        return []

    # ---- optimisation
    def configure_optimizers(self) -> Any:
        s = self.settings
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
        total = max(1, s.max_epochs * s.steps_per_epoch)
        warmup = max(1, total // 20)
        if s.scheduler in ("cosine", "onecycle"):

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
        else:

            def factor(step: int) -> float:
                return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    def on_train_epoch_start(self) -> None:
        self._tokens, self._epoch_started = 0, time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """One batch (with DDP this process's share of it: the gradients are averaged over the
        processes in the backward pass)."""
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        loss = self.net(**batch).loss
        self.manual_backward(loss / self.accumulate)
        self._tokens += int(batch["attention_mask"].sum())
        last = batch_idx == self.trainer.num_training_batches - 1
        if (batch_idx + 1) % self.accumulate == 0 or last:
            if self.settings.gradient_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.net.parameters() if p.requires_grad], self.settings.gradient_clip
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        self._losses.append(float(loss.detach()))

    # ---- validation and test
    def _add_loss(self, batch: dict[str, torch.Tensor]) -> None:
        if not batch:  # DDP: this process's share of the examples ran out before the others'
            return
        loss = self.net(**batch).loss
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        self._eval[0] += float(loss) * n
        self._eval[1] += n

    def on_validation_epoch_start(self) -> None:
        self._eval = [0.0, 0]
        if self._epoch_started is not None:
            seconds = time.perf_counter() - self._epoch_started
            (tokens,) = self._summed([float(self._tokens)])
            self.epoch_metrics["train/tokens_per_second"] = tokens / max(seconds, 1e-9)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._add_loss(batch)

    def _eval_loss(self) -> float:
        total, tokens = self._summed([float(self._eval[0]), float(self._eval[1])])
        return total / tokens if tokens else float("nan")

    def on_validation_epoch_end(self) -> None:
        loss = self._eval_loss()
        self.epoch_metrics.update({"val/loss": loss, "val/perplexity": _perplexity(loss)})
        if self.trainer.sanity_checking or not self.settings.samples or not self._answers_here:
            return
        epoch = self.current_epoch + 1
        answers = generate(
            self.net,
            self.tokenizer,
            [e.prompt_ids for e in self.settings.samples],
            max_new_tokens=self.settings.max_new_tokens,
        )
        rows = [
            {"epoch": epoch, "prompt": e.prompt, "reference": e.reference, "answer": a}
            for e, a in zip(self.settings.samples, answers, strict=True)
        ]
        self.samples.extend(rows)
        if self.on_samples is not None:
            self.on_samples(self)

    def on_test_epoch_start(self) -> None:
        self._eval = [0.0, 0]
        self.test_answers = []

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._add_loss(batch)

    def on_test_epoch_end(self) -> None:
        loss = self._eval_loss()
        items = self.trainer.datamodule.splits["test"]
        answers = (
            generate(
                self.net,
                self.tokenizer,
                [e.prompt_ids for e in items],
                max_new_tokens=self.settings.max_new_tokens,
            )
            if items and items[0].prompt and self._answers_here
            else []
        )
        self.test_answers = [
            {"prompt": e.prompt, "reference": e.reference, "answer": a}
            for e, a in zip(items, answers, strict=False)
        ]
        results = {"test/loss": loss, "test/perplexity": _perplexity(loss)}
        if self.test_answers:
            results["test/exact_match"] = sum(
                exact_match(r["answer"], r["reference"]) for r in self.test_answers
            ) / len(self.test_answers)
            results["test/token_f1"] = sum(
                token_f1(r["answer"], r["reference"]) for r in self.test_answers
            ) / len(self.test_answers)
        self.test_results = results


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")
