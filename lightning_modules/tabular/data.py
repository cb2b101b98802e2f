"""The tabular DataModule: split, fit preprocessing on the training rows only, keep tensors in memory.

Small tables must not pay DataLoader-per-row overhead: every split lives as a few tensors (on the
training device once ``setup`` runs) and batches are slices of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from studio.core.errors import TrainingError
from studio.core.runtime import TabularPreprocessor, encode_target, fit_target, label_units, with_log_range
from studio.core.spec import RunSpec
from studio.core.tasks import head_task

CHUNK_STEPS = 64
# Validation and test rows per batch (at least the training batch size): few batches, because each one
# costs Lightning's per-batch bookkeeping and the metrics' per-update work, and no gradients are kept.
EVAL_BATCH_ROWS = 8192


class TensorBatches:
    """Batches sliced from in-memory tensors; reshuffled every pass when ``shuffle`` is set.

    A final batch of a single row is dropped while training (batch norm cannot train on one row).
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int = 0):
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.n = tensors[0].shape[0]
        self.generator = torch.Generator().manual_seed(seed)
        self.drop_single = shuffle and self.n % batch_size == 1 and self.n > 1

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_single else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        tensors = self.tensors
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).to(tensors[0].device)
            tensors = tuple(t.index_select(0, order) for t in tensors)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in tensors)


class ShardedBatches:
    """Training batches for one of ``world`` processes training together (DDP): every process draws the
    same order of all the training rows (the same seed), cuts it into the same batches of ``batch_size``
    rows and keeps its own share of each (``rank``-th of ``world`` nearly equal parts). So every update
    still learns from ``batch_size`` rows, split among the devices, every process takes the same number
    of steps (their gradients are averaged at each one), and each row is used once per epoch.

    A last batch too small to give every process two rows (batch norm needs two) is left out, as the
    single-device loop leaves out a last batch of one row."""

    def __init__(
        self, tensors: tuple[torch.Tensor, ...], batch_size: int, rank: int, world: int, seed: int = 0
    ):
        self.tensors = tensors
        self.batch_size = batch_size
        self.rank, self.world = rank, world
        self.n = tensors[0].shape[0]
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return sharded_steps(self.n, self.batch_size, self.world)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(self.n, generator=self.generator).to(self.tensors[0].device)
        for step in range(len(self)):
            rows = order[step * self.batch_size : (step + 1) * self.batch_size]
            mine = torch.tensor_split(rows, self.world)[self.rank]
            yield tuple(t.index_select(0, mine) for t in self.tensors)


def sharded_steps(n: int, batch_size: int, world: int) -> int:
    """Batches per epoch when ``world`` processes share every batch of ``batch_size`` rows: a last batch
    with fewer than two rows per process is left out."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 * world else 0)


class EvalShard:
    """One process's share of the validation or test rows (DDP): the ``rank``-th of ``world`` nearly
    equal parts, in ``batches`` batches. Every process goes through the same number of batches (the
    model's buffers are synchronised at each one), so a share smaller than that yields empty batches
    (the module skips them)."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batches: int):
        self.tensors = tensors
        self.batches = max(1, batches)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        parts = [torch.tensor_split(t, self.batches) for t in self.tensors]
        yield from zip(*parts, strict=True)


def stratified_split(
    labels: np.ndarray | None,
    n: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    fold: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices for train / validation / test. With labels, every class is split in proportion
    (a class too small to split stays in training).

    ``fold`` > 0 gives a cross-validation fold of the same split: the test rows stay the same and the
    validation rows are the ``fold``-th next block of the rows that are not test rows (fold 0 is the
    split itself; a search scores small tables on several folds)."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train, val, test = [], [], []
    for group in groups:
        group = rng.permutation(group)
        n_test = int(round(len(group) * test_fraction)) if len(group) >= 3 else 0
        n_val = int(round(len(group) * val_fraction)) if len(group) >= 3 else 0
        if len(group) >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        rest = np.roll(group[n_test:], -fold * n_val) if fold else group[n_test:]
        test.append(group[:n_test])
        val.append(rest[:n_val])
        train.append(rest[n_val:])
    return tuple(np.sort(np.concatenate(parts)) for parts in (train, val, test))  # type: ignore[return-value]


def quantile_bins(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin a numeric target by quantiles so that a regression split is stratified too: every split
    then spans the whole range of the target (less luck in small test sets)."""
    bins = int(min(bins, max(len(values) // 20, 1)))
    if bins < 2:
        return np.zeros(len(values), dtype="int64")
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values, side="right").astype("int64")


class TabularDataModule(pl.LightningDataModule):
    """Splits a table, fits preprocessing on the training split and serves in-memory batches."""

    def __init__(
        self,
        frame: pd.DataFrame,
        spec: RunSpec,
        plan: Any,
        dropped_rows: int = 0,
        fold: int = 0,
        extra_inputs: Any = None,
    ):
        """``frame`` holds only rows with a target value; ``plan`` says which columns feed the model and how
        (``numeric``, ``categorical``, ``datetime`` lists and ``ignored``: column -> why), as the tabular
        data kind decides it from the profile (``studio.modalities.tabular.prepare``).

        ``extra_inputs(frame)``, when given, returns more network inputs for every row (arrays with one row
        per row of ``frame``, e.g. the word ids of a table's text), placed after the numbers and
        categories in every batch."""
        super().__init__()
        self.spec = spec
        target = spec.data.target
        self.dropped_rows = dropped_rows
        self.plan = plan
        self.head = head_task(spec.task)
        self.target_state = fit_target(
            frame[target], self.head, spec.preprocessing.scale_target, log=getattr(plan, "log_target", False)
        )
        if self.head == "classification":
            n_classes = len(self.target_state["classes"])
            if n_classes < 2:
                raise TrainingError(
                    f"The target '{target}' has a single class; classification needs at least two."
                )
            if n_classes > 1000:
                raise TrainingError(
                    f"The target '{target}' has {n_classes} different values, too many classes; "
                    "if it is a number, choose the regression task."
                )
        else:
            numbers = pd.to_numeric(frame[target], errors="coerce")
            if numbers.isna().mean() > 0.0:
                bad = frame[target][numbers.isna()].iloc[0]
                raise TrainingError(
                    f"Regression needs numbers in '{target}', but it holds values such as {bad!r}; "
                    "choose the classification task or another target."
                )
        labels = encode_target(frame[target], self.target_state)
        split = self.spec.data
        self.train_idx, self.val_idx, self.test_idx = stratified_split(
            labels if self.head == "classification" else quantile_bins(labels),
            len(frame),
            split.val_fraction,
            split.test_fraction,
            split.seed,
            fold,
        )
        pre = spec.preprocessing
        # Fold models of one ensemble share one preprocessing, fitted on every row that is not a test row
        # (the same for every fold): the bundle then transforms a row once for all of them, and its ONNX
        # graph takes the one model's inputs.
        fitted_on = np.union1d(self.train_idx, self.val_idx) if spec.data.use_all_data else self.train_idx
        learned_from = np.union1d(self.train_idx, self.val_idx)  # never the test rows
        self.target_state = with_log_range(self.target_state, frame[target].iloc[learned_from])
        self.preprocessor = TabularPreprocessor.fit(
            frame.iloc[fitted_on],
            self.plan.numeric,
            self.plan.categorical,
            self.plan.datetime,
            numeric_scaling=pre.numeric_scaling,
            numeric_fill=pre.numeric_fill,
            missing_indicators=pre.missing_indicators,
            categorical_encoding=pre.categorical_encoding,
            max_categories=pre.max_categories,
            log_scaled=getattr(self.plan, "log_numeric", []) if pre.log_scale else [],
            rare_category_rows=pre.rare_category_rows,
        )
        x_num, x_cat = self.preprocessor.transform(frame)
        extra = [torch.from_numpy(x) for x in extra_inputs(frame)] if extra_inputs is not None else []
        self.world_size = 1
        """Processes training together (DDP): set by the engine before training (it changes the steps
        per epoch), checked against the Trainer's in :meth:`setup`."""
        self.rank = 0
        self._train_batches: TensorBatches | ShardedBatches | None = None
        self._order_state: torch.Tensor | None = None  # from a checkpoint, for the next train loader
        y = torch.from_numpy(labels)
        self.tensors = {
            name: (
                torch.from_numpy(x_num[idx]),
                torch.from_numpy(x_cat[idx]),
                *(x[torch.from_numpy(idx)] for x in extra),
                y[idx],
            )
            for name, idx in (("train", self.train_idx), ("val", self.val_idx), ("test", self.test_idx))
        }
        self.frame = frame

    @property
    def n_out(self) -> int:
        return len(self.target_state["classes"]) if self.head == "classification" else 1

    @property
    def sizes(self) -> dict[str, int]:
        return {name: int(t[-1].shape[0]) for name, t in self.tensors.items()}

    def targets(self, split: str) -> np.ndarray:
        """The target of every row of a split (``train``, ``val``, ``test``): class indices, or the
        numbers in the target's own units (not scaled)."""
        y = self.tensors[split][-1].detach().cpu().numpy()  # the target is a batch's last tensor
        if self.head == "classification":
            return y
        return label_units(y, self.target_state)  # the truth: never smeared

    def setup(self, stage: str | None = None) -> None:
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        self.tensors = {name: tuple(t.to(device) for t in ts) for name, ts in self.tensors.items()}
        world = trainer.world_size if trainer is not None else 1
        if world != self.world_size:
            raise RuntimeError(
                f"the DataModule was prepared for {self.world_size} process(es), the Trainer runs {world}"
            )
        self.rank = trainer.global_rank if trainer is not None else 0

    @property
    def batch_size(self) -> int:
        """The spec's batch size, or for 0 (automatic) about 1/50 of the training rows, in [32, 512]."""
        if self.spec.training.batch_size:
            return self.spec.training.batch_size
        return int(np.clip(2 ** round(np.log2(max(len(self.train_idx), 1) / 50)), 32, 512))

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (a last batch of one row is skipped: batch norm needs two; with
        several processes, a last batch with fewer than two rows each, see :class:`ShardedBatches`)."""
        if self.world_size > 1:
            return max(sharded_steps(len(self.train_idx), self.batch_size, self.world_size), 1)
        full, rest = divmod(len(self.train_idx), self.batch_size)
        return max(full + (1 if rest > 1 or (rest == 1 and full == 0) else 0), 1)

    def check_world_size(self) -> None:
        """A plain error when the training rows are too few to give every process two rows of a batch."""
        rows, world = len(self.train_idx), self.world_size
        if world > 1 and (self.batch_size < 2 * world or sharded_steps(rows, self.batch_size, world) == 0):
            raise TrainingError(
                f"{rows} training rows are too few to share among {world} devices (each needs at least "
                f"two rows of every batch of {self.batch_size}); use fewer devices or a larger batch size."
            )

    @property
    def steps_per_chunk(self) -> int:
        """Optimiser steps per Lightning batch. Lightning's per-batch bookkeeping costs about as much as
        a small MLP's whole step on a CPU, so training batches are chunks of several mini-batches that
        the module steps through itself (see ``TabularLightningModule.training_step``). With several
        processes (DDP) every Lightning batch is one mini-batch: DDP averages the gradients of exactly
        one backward pass per forward pass of the wrapped module."""
        if self.world_size > 1:
            return 1
        return max(1, min(CHUNK_STEPS, self.steps_per_epoch))

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        batch_size = self.batch_size if shuffle else max(self.batch_size, EVAL_BATCH_ROWS)
        return TensorBatches(self.tensors[split], batch_size, shuffle, seed=self.spec.data.seed)

    def train_dataloader(self) -> TensorBatches | ShardedBatches:
        if self.world_size > 1:
            batches: TensorBatches | ShardedBatches = ShardedBatches(
                self.tensors["train"], self.batch_size, self.rank, self.world_size, seed=self.spec.data.seed
            )
        else:
            chunk = self.batch_size * self.steps_per_chunk
            batches = TensorBatches(self.tensors["train"], chunk, shuffle=True, seed=self.spec.data.seed)
        if self._order_state is not None:
            batches.generator.set_state(self._order_state)
        self._train_batches = batches
        return batches

    # The training order is drawn from the loader's own generator once per epoch (one permutation of
    # the rows, whatever the batch size): a checkpoint keeps its state, so a resumed run shuffles its
    # next epochs as the straight run would have.
    def state_dict(self) -> dict[str, Any]:
        if self._train_batches is None:
            return {}
        return {"order": self._train_batches.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._order_state = state_dict.get("order")
        if self._order_state is not None and self._train_batches is not None:
            self._train_batches.generator.set_state(self._order_state)

    def val_dataloader(self) -> TensorBatches | EvalShard:
        return self._eval_batches("val")

    def test_dataloader(self) -> TensorBatches | EvalShard:
        return self._eval_batches("test")

    def _eval_batches(self, split: str) -> TensorBatches | EvalShard:
        """All the split's rows, or with several processes this process's share (their metrics are
        summed over all processes by the module)."""
        if self.world_size == 1:
            return self._batches(split, shuffle=False)
        tensors = self.tensors[split]
        share = math.ceil(tensors[0].shape[0] / self.world_size)  # the largest share
        batches = math.ceil(share / max(self.batch_size, EVAL_BATCH_ROWS))
        return EvalShard(tuple(torch.tensor_split(t, self.world_size)[self.rank] for t in tensors), batches)
