"""Callbacks the studio's training uses: keep the best weights, log to MLflow, report progress, cancel."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch


def optimizer_steps(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """Optimiser steps so far: the module's own count when it keeps one (the tabular module steps its
    raw optimiser itself), else Lightning's global step."""
    return getattr(pl_module, "optimizer_steps", None) or trainer.global_step


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer is finite (one host sync)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point() and t.numel()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class TrainingCancelledSignal(Exception):
    """Raised inside the training loop when the user asked to stop; caught by ``studio.training``."""


class TrainingDivergedSignal(Exception):
    """Raised inside the training loop as soon as a loss is NaN or infinite (the weights are then
    useless: every later step only spreads the NaN); caught by ``studio.training``.

    ``epoch`` is 1-based; ``where`` is ``"training"`` or ``"validation"`` (a loss) or ``"weights"``."""

    def __init__(self, epoch: int, value: float, where: str):
        super().__init__(f"{where} loss {value} at epoch {epoch}")
        self.epoch = epoch
        self.value = value
        self.where = where


class BestWeights(pl.Callback):
    """Keeps a copy of the weights of the best validation epoch in memory (faster than writing
    checkpoints for every improvement), restores them at the end, and with ``patience`` stops
    training when the monitored metric has not improved for that many epochs (early stopping).

    Reads the module's ``epoch_metrics`` (the last validation's ``val/*`` values)."""

    def __init__(self, monitor: str, mode: str, patience: int | None = None):
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}  # every val/* value of the best epoch
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = pl_module.epoch_metrics.get(self.monitor)
        if score is None:
            return
        improved = score == score and (  # NaN never counts as an improvement
            self.best_score is None
            or (score < self.best_score if self.mode == "min" else score > self.best_score)
        )
        if improved:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_metrics = dict(pl_module.epoch_metrics)
            self.best_state = copy.deepcopy(pl_module.state_dict())
        waited = trainer.current_epoch - (self.best_epoch if self.best_epoch is not None else -1)
        if self.patience is not None and waited >= self.patience:
            trainer.should_stop = True

    def restore(self, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)

    def best_state_is_finite(self) -> bool:
        """Whether a best state was kept and all its floating-point values are finite (one host sync)."""
        if self.best_state is None:
            return False
        floats = [t for t in self.best_state.values() if t.is_floating_point() and t.numel()]
        return not floats or bool(torch.stack([torch.isfinite(t).all() for t in floats]).all())


class TrainingReporter(pl.Callback):
    """Sends metrics to MLflow (batched) and progress to the caller; polls for cancellation.

    ``train/loss`` (the mean since the previous point) is logged about ``points_per_epoch`` times per
    epoch, ``val/*`` after each validation; the buffer is written at least every ``flush_seconds`` and
    right after the first point, so live curves appear quickly.

    It also stops a run whose loss became NaN or infinite (:class:`TrainingDivergedSignal`): every
    step's loss is already read once per Lightning batch for the curve, so the check costs nothing more.
    The time left is measured, not guessed: the mean duration of this run's recent epochs (the first
    one only until a second has ended, since it carries the start-up) times the epochs still to go;
    ``None`` until the first epoch has ended.
    """

    def __init__(
        self,
        log_metrics: Callable[[dict[str, float], int], None],
        flush: Callable[[], None],
        on_progress: Callable[[dict[str, Any]], None],
        should_stop: Callable[[], bool],
        steps_per_epoch: int,
        points_per_epoch: int = 10,
        flush_seconds: float = 2.0,
        progress_seconds: float = 0.5,
    ):
        self.log_metrics = log_metrics
        self.flush = flush
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.log_every = max(1, self.steps_per_epoch // points_per_epoch)
        self.flush_seconds = flush_seconds
        self.progress_seconds = progress_seconds
        self.started = time.monotonic()
        self.last_flush = 0.0
        self.last_progress = 0.0
        self.first_point_at: float | None = None
        self.last_logged_step = 0
        self.window: list[float] = []
        self.latest: dict[str, float] = {}
        self.epoch_seconds: list[float] = []  # wall time of each finished epoch (training + validation)
        self.epoch_started: float | None = None  # set while an epoch is under way

    def _progress(self, trainer: pl.Trainer, pl_module: pl.LightningModule, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < self.progress_seconds:
            return
        self.last_progress = now
        max_epochs = max(trainer.max_epochs or 1, 1)
        total = max_epochs * self.steps_per_epoch
        step = optimizer_steps(trainer, pl_module)
        fraction = min(step / total, 1.0) if total else 0.0
        self.on_progress(
            {
                "epoch": trainer.current_epoch + 1,
                "max_epochs": max_epochs,
                "step": step,
                "total_steps": total,
                "fraction": fraction,
                "eta_seconds": self.seconds_left(max_epochs, now),
                "metrics": dict(self.latest),
            }
        )

    def seconds_left(self, max_epochs: int, now: float) -> float | None:
        """Measured time left (see the class docstring); ``None`` before the first epoch has ended."""
        if not self.epoch_seconds:
            return None
        measured = (self.epoch_seconds[1:] or self.epoch_seconds)[-5:]
        per_epoch = sum(measured) / len(measured)
        left = per_epoch * max(max_epochs - len(self.epoch_seconds), 0)
        if self.epoch_started is not None:  # part of the current epoch is done already
            left -= min(now - self.epoch_started, per_epoch)
        return max(left, 0.0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_started = time.monotonic()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.should_stop():
            raise TrainingCancelledSignal()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        losses = pl_module.pop_step_losses()
        first_step = optimizer_steps(trainer, pl_module) - len(losses) + 1
        bad = (
            None
            if all(map(math.isfinite, losses))
            else next(i for i, v in enumerate(losses) if not math.isfinite(v))
        )
        for offset, loss in enumerate(losses if bad is None else losses[:bad]):
            self.window.append(loss)
            step = first_step + offset
            if step - self.last_logged_step >= self.log_every or self.last_logged_step == 0:
                self._log_window(step)
        if bad is not None:
            self._log_window(first_step + bad - 1)  # the curve up to the last finite step
            self._progress(trainer, pl_module, force=True)
            raise TrainingDivergedSignal(trainer.current_epoch + 1, losses[bad], "training")
        self._progress(trainer, pl_module)

    def _log_window(self, step: int) -> None:
        """Log the mean loss of the steps since the previous point as ``train/loss`` at ``step``."""
        if not self.window:
            return
        loss = sum(self.window) / len(self.window)
        self.window.clear()
        self.last_logged_step = step
        self.latest["train/loss"] = loss
        self.log_metrics({"train/loss": loss}, step)
        now = time.monotonic()
        if self.first_point_at is None:
            self.first_point_at = now - self.started
            self.flush()
            self.last_flush = now
        elif now - self.last_flush >= self.flush_seconds:
            self.flush()
            self.last_flush = now

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run before the module's hook there, so the epoch's
        # metrics are not collected yet.
        if trainer.sanity_checking:
            return
        metrics = dict(pl_module.epoch_metrics)
        loss = metrics.get("val/loss")
        if loss is not None and not math.isfinite(loss):  # e.g. the epoch's very last step broke the weights
            raise TrainingDivergedSignal(trainer.current_epoch + 1, loss, "validation")
        if not all_finite(pl_module):  # batch norm's running statistics can overflow while losses stay finite
            raise TrainingDivergedSignal(trainer.current_epoch + 1, math.inf, "weights")
        metrics["epoch"] = float(trainer.current_epoch + 1)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        if optimizer is not None:
            metrics["learning_rate"] = float(optimizer.param_groups[0]["lr"])
        self.latest.update(metrics)
        self.log_metrics(metrics, optimizer_steps(trainer, pl_module))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_window(optimizer_steps(trainer, pl_module))  # the epoch's last steps
        epoch_stats = {}
        accuracy = pl_module.pop_train_accuracy()
        if accuracy is not None:
            epoch_stats["train/accuracy"] = accuracy
        if epoch_stats:
            self.latest.update(epoch_stats)
            self.log_metrics(epoch_stats, optimizer_steps(trainer, pl_module))
        self.flush()
        self.last_flush = time.monotonic()
        if self.epoch_started is not None:
            self.epoch_seconds.append(self.last_flush - self.epoch_started)
            self.epoch_started = None
        self._progress(trainer, pl_module, force=True)
