"""Callbacks the studio's training uses: keep the best weights, log to MLflow, report progress, cancel."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch


def optimizer_steps(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """Optimiser steps so far: the module's own count when it keeps one (the tabular module steps its
    raw optimiser itself), else Lightning's global step."""
    return getattr(pl_module, "optimizer_steps", None) or trainer.global_step


class TrainingCancelledSignal(Exception):
    """Raised inside the training loop when the user asked to stop; caught by ``studio.training``."""


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
            self.best_state = copy.deepcopy(pl_module.state_dict())
        waited = trainer.current_epoch - (self.best_epoch if self.best_epoch is not None else -1)
        if self.patience is not None and waited >= self.patience:
            trainer.should_stop = True

    def restore(self, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)


class TrainingReporter(pl.Callback):
    """Sends metrics to MLflow (batched) and progress to the caller; polls for cancellation.

    ``train/loss`` (the mean since the previous point) is logged about ``points_per_epoch`` times per
    epoch, ``val/*`` after each validation; the buffer is written at least every ``flush_seconds`` and
    right after the first point, so live curves appear quickly.
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

    def _progress(self, trainer: pl.Trainer, pl_module: pl.LightningModule, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < self.progress_seconds:
            return
        self.last_progress = now
        total = max(trainer.max_epochs or 1, 1) * self.steps_per_epoch
        step = optimizer_steps(trainer, pl_module)
        fraction = min(step / total, 1.0) if total else 0.0
        elapsed = now - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        self.on_progress(
            {
                "epoch": trainer.current_epoch + 1,
                "max_epochs": trainer.max_epochs or 1,
                "step": step,
                "total_steps": total,
                "fraction": fraction,
                "eta_seconds": eta,
                "metrics": dict(self.latest),
            }
        )

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
        for offset, loss in enumerate(losses):
            self.window.append(loss)
            step = first_step + offset
            if step - self.last_logged_step >= self.log_every or self.last_logged_step == 0:
                self._log_window(step)
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
        self._progress(trainer, pl_module, force=True)
