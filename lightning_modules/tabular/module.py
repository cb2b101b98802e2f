"""The LightningModule for tables (and tables with text). It receives its network ready-made (from the
registry); a batch is the network's inputs followed by the target, and ``task`` is what the network's
output is (``classification``: one logit per class, or ``regression``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from studio.core.spec import OptimizerSpec, SchedulerSpec, metric_mode


def _metrics(task: str, n_classes: int, prefix: str) -> torchmetrics.MetricCollection:
    if task == "classification":
        metrics = {
            "accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=n_classes),
            "f1_macro": torchmetrics.F1Score(task="multiclass", num_classes=n_classes, average="macro"),
            "auroc": torchmetrics.AUROC(task="multiclass", num_classes=n_classes),
        }
    else:
        metrics = {
            "mae": torchmetrics.MeanAbsoluteError(),
            "rmse": torchmetrics.MeanSquaredError(squared=False),
            "r2": torchmetrics.R2Score(),
        }
    return torchmetrics.MetricCollection(metrics, prefix=prefix)


def adam_optimizer(spec: OptimizerSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam or AdamW for ``params``; the fused kernel where every parameter allows it (floating point,
    on the CPU or a CUDA device): one pass over each tensor instead of several. A bag of words' step
    updates its whole word table (millions of weights), and there the fused step is about 3-4 times
    faster on a CPU; the updates are the same up to float rounding."""
    kind = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return kind(params, lr=spec.learning_rate, weight_decay=spec.weight_decay, fused=fused or None)


class TabularLightningModule(pl.LightningModule):
    """Loss, metrics (``val/*``, ``test/*``), optimiser and schedule around a given network.

    The per-step path avoids ``self.log`` and host syncs: the training loss and accuracy are summed on
    the device and read by the tracking callback every few steps.
    """

    def __init__(
        self,
        net: nn.Module,
        task: str,
        n_classes: int,
        optimizer: OptimizerSpec,
        scheduler: SchedulerSpec,
        monitor: str,
        max_epochs: int,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        target_log: bool = False,
        target_log_range: tuple[float, float] | None = None,
        target_smear: float = 1.0,
        batch_size: int = 32,
        steps_per_epoch: int = 1,
        gradient_clip: float = 0.0,
        accumulate: int = 1,
    ):
        super().__init__()
        # Each Lightning batch is a chunk of several mini-batches; training_step steps through them.
        self.automatic_optimization = False
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch  # optimiser steps per epoch
        self.gradient_clip = gradient_clip
        # Gradient accumulation (after running out of memory: half the batch, two mini-batches per
        # step). Lightning's ``accumulate_grad_batches`` does not apply to manual optimisation.
        self.accumulate = max(1, int(accumulate))
        self._pending: list[torch.Tensor] = []  # losses of the mini-batches accumulated so far
        self.optimizer_steps = 0  # counted here: the raw-optimiser path does not advance trainer.global_step
        self.net = net
        self.task = task
        self.n_classes = n_classes
        self.optimizer_spec = optimizer
        self.scheduler_spec = scheduler
        self.monitor = monitor
        self.max_epochs = max_epochs
        self.target_mean = target_mean
        self.target_std = target_std
        self.target_log = target_log  # the target is learned on a log scale: metrics come back from it
        self.target_log_range = tuple(target_log_range) if target_log_range else (-math.inf, math.inf)
        # a log-scale target's smearing factor (studio.core.runtime.smearing): known once the kept epoch
        # is, and applied to the predictions (never the truth) the test metrics score
        self.target_smear = float(target_smear)
        self.val_metrics = _metrics(task, n_classes, "val/")
        self.test_metrics = _metrics(task, n_classes, "test/")
        # Kept on the device and read once per Lightning batch: each step's loss, the epoch's (hits, rows).
        self._step_losses: list[torch.Tensor] = []
        self._hits: list[torch.Tensor] = []  # right answers of each mini-batch since the last read
        self._hit_rows = 0  # and how many rows they were out of
        self.register_buffer("_eval_sums", torch.zeros(2), persistent=False)  # loss × rows, rows
        # Validation rows per class (classification), for the "better than a trivial guess" check after
        # a divergence; summed over epochs (the split does not change), read only when asked.
        self.register_buffer("_val_label_counts", torch.zeros(max(n_classes, 1)), persistent=False)
        self.epoch_metrics: dict[str, float] = {}  # the last validation's val/* values
        self.eval_rows = 0  # rows the last validation or test covered (every process's, with DDP)
        self.test_results: dict[str, float] = {}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The network's output for a batch's inputs: numbers and category codes, and for text the
        word ids (every tensor of a batch but its last, the target)."""
        return self.net(*inputs)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out, y)
        return F.mse_loss(out.squeeze(-1), y)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        lightning_optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.scheduler_spec.name == "onecycle" else None
        # In full precision nothing needs Lightning's precision plugin between backward and step, so
        # the raw optimiser is used: Lightning's wrappers (hooks around backward and step) cost about
        # as much as a small MLP's step on a CPU. Mixed precision keeps them (loss scaling, autocast).
        # (With several processes the backward pass still goes through Lightning, see ``_step``.)
        plain = self.full_precision
        optimizer = lightning_optimizer.optimizer if plain else lightning_optimizer
        *inputs, y = batch
        # batch norm cannot train on a single row: a last mini-batch of one is skipped
        starts = [s for s in range(0, len(y), self.batch_size) if not (len(y) - s == 1 and len(y) > 1)]
        last_chunk = self.accumulate > 1 and batch_idx == self.trainer.num_training_batches - 1
        for i, start in enumerate(starts):
            stop = start + self.batch_size
            target = y[start:stop]
            out = self.net(*(x[start:stop] for x in inputs))
            loss = self._loss(out, target)
            self._step(optimizer, scheduler, loss, out, target, plain, last_chunk and i == len(starts) - 1)

    @property
    def full_precision(self) -> bool:
        """32-bit training: nothing needs Lightning's precision plugin between backward and step."""
        return self.trainer.precision in ("32-true", "32")

    def _step(
        self,
        optimizer: Any,
        scheduler: Any,
        loss: torch.Tensor,
        out: torch.Tensor,
        target: torch.Tensor,
        plain: bool,
        last: bool = False,
    ) -> None:
        """One optimiser step from a mini-batch's loss (``plain``: the raw optimiser, no Lightning
        precision plugin), then the running training loss and hits.

        With gradient accumulation, the gradients of ``accumulate`` mini-batches (each loss divided by
        ``accumulate``) make one step, as one batch that many times larger would; ``last`` (the epoch's
        last mini-batch) steps with what has accumulated. The step's loss is the mini-batches' mean."""
        accumulating = self.accumulate > 1
        if not (accumulating and self._pending):
            optimizer.zero_grad(set_to_none=True)
        part = loss / self.accumulate if accumulating else loss
        if plain and not self.distributed:
            part.backward()
        else:  # DDP: Lightning's backward prepares the gradient averaging across processes
            self.manual_backward(part)
        with torch.no_grad():
            if self.task == "classification":
                # (a list and a Python count: adding into a buffer cost twice the kernels per step)
                self._hits.append((out.argmax(-1) == target).sum())
                self._hit_rows += len(target)
        if accumulating:
            self._pending.append(loss.detach())
            if len(self._pending) < self.accumulate and not last:
                return
            loss = torch.stack(self._pending).mean()
            self._pending = []
        if self.gradient_clip:
            if plain:
                torch.nn.utils.clip_grad_norm_(self.parameters(), self.gradient_clip)
            else:
                self.clip_gradients(
                    optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm"
                )
        optimizer.step()
        self.optimizer_steps += 1
        if scheduler is not None and scheduler.last_epoch < scheduler.total_steps - 1:
            scheduler.step()
        self._step_losses.append(loss.detach())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["studio_module"] = {"optimizer_steps": self.optimizer_steps}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.optimizer_steps = int(checkpoint.get("studio_module", {}).get("optimizer_steps", 0))

    def on_train_epoch_end(self) -> None:
        # Manual optimisation: epoch-wise schedules are stepped here (validation has run by now).
        scheduler = self.lr_schedulers()
        if scheduler is None or self.scheduler_spec.name == "onecycle":
            return
        if self.scheduler_spec.name == "plateau":
            value = self.epoch_metrics.get(self.monitor)
            if value is not None:
                scheduler.step(value)
        else:
            scheduler.step()

    @property
    def distributed(self) -> bool:
        """Several processes train together (DDP)."""
        trainer = self._trainer
        return trainer is not None and trainer.world_size > 1

    def _sum_over_processes(self, tensor: torch.Tensor, mean: bool = False) -> torch.Tensor:
        """The tensor summed (or averaged) over every process with DDP; itself otherwise. Every
        process must call it at the same point."""
        if not self.distributed:
            return tensor
        return self.trainer.strategy.reduce(tensor.clone(), reduce_op="mean" if mean else "sum")

    def pop_step_losses(self) -> list[float]:
        """The loss of every optimiser step since the last call (one host sync). With DDP: the mean over
        the processes, so every process sees the same losses (and stops at the same NaN)."""
        if not self._step_losses:
            return []
        losses = self._sum_over_processes(torch.stack(self._step_losses).float(), mean=True).tolist()
        self._step_losses.clear()
        return losses

    def pop_train_accuracy(self) -> float | None:
        """Training accuracy over the batches since the last call (classification only; with DDP over
        every process's rows)."""
        hits = torch.stack(self._hits).sum().float() if self._hits else torch.zeros((), device=self.device)
        sums = torch.stack([hits, torch.tensor(float(self._hit_rows), device=hits.device)])
        self._hits, self._hit_rows = [], 0
        hits, rows = self._sum_over_processes(sums).tolist()
        return hits / rows if rows else None

    def _update(
        self, metrics: torchmetrics.MetricCollection, batch: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        *inputs, y = batch
        out = self(*inputs)
        loss = self._loss(out, y)
        if self.task == "classification":
            metrics.update(out.float().softmax(-1), y)
        else:
            metrics.update(self._units(out.squeeze(-1), predicted=True), self._units(y))
        return loss

    def _units(self, scaled: torch.Tensor, predicted: bool = False) -> torch.Tensor:
        """Scaled regression values in the target's own units (as ``studio.core.runtime.target_units``);
        ``predicted`` values of a log-scale target are smeared (times ``target_smear`` before the − 1)."""
        values = scaled.float() * self.target_std + self.target_mean
        if not self.target_log:
            return values
        values = values.clamp(*self.target_log_range)
        if predicted and self.target_smear != 1.0:
            return torch.exp(values) * self.target_smear - 1.0
        return torch.expm1(values)

    def log_residuals(self, tensors: tuple[torch.Tensor, ...]) -> np.ndarray | None:
        """Truth minus prediction on the unscaled log scale for a split's tensors (its inputs, then the
        target), with the network's current weights, in evaluation mode; None unless the target is
        learned on a log scale (what ``studio.core.runtime.smearing`` takes)."""
        if self.task == "classification" or not self.target_log:
            return None
        from studio.core.runtime import log_residuals

        *inputs, y = tensors
        device = next(self.net.parameters()).device
        was_training = self.net.training
        self.net.eval()
        outs = []
        try:
            with torch.no_grad():
                for start in range(0, len(y), 4096):
                    chunk = (x[start : start + 4096].to(device) for x in inputs)
                    outs.append(self.net(*chunk).float().reshape(-1).cpu())
        finally:
            self.net.train(was_training)
        out = torch.cat(outs) if outs else torch.zeros(0)
        state = {"mean": self.target_mean, "std": self.target_std, "log_range": self.target_log_range}
        return log_residuals(out.numpy(), y.detach().float().cpu().numpy(), state)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        if not len(batch[-1]):  # DDP: this process's share of the rows ran out before the others'
            return
        self._add_eval_loss(self._update(self.val_metrics, batch), len(batch[-1]))
        self._count_val_labels(batch[-1])

    def _count_val_labels(self, y: torch.Tensor) -> None:
        if self.task == "classification":
            self._val_label_counts += torch.bincount(y, minlength=self.n_classes)[: self.n_classes]

    def val_class_shares(self) -> list[float]:
        """Each class's share of the validation rows (classification; empty before a validation)."""
        counts = (
            self._sum_over_processes(self._val_label_counts).tolist() if self.task == "classification" else []
        )
        total = sum(counts)
        return [count / total for count in counts] if total else []

    def on_validation_epoch_end(self) -> None:
        self.epoch_metrics = self._collect("val", self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        if not len(batch[-1]):  # DDP: this process's share of the rows ran out before the others'
            return
        self._add_eval_loss(self._update(self.test_metrics, batch), len(batch[-1]))

    def on_test_epoch_end(self) -> None:
        self.test_results = self._collect("test", self.test_metrics)

    # Validation and test results are kept here rather than sent through ``self.log``: Lightning's
    # result collection costs about a millisecond per call, several times per epoch, and nothing
    # in the studio reads it (early stopping, best weights and tracking read ``epoch_metrics``).
    def _add_eval_loss(self, loss: torch.Tensor, rows: int) -> None:
        self._eval_sums[0] += loss.detach().float() * rows
        self._eval_sums[1] += rows

    def _collect(self, prefix: str, metrics: torchmetrics.MetricCollection) -> dict[str, float]:
        """The split's loss and metrics over all its rows (with DDP: the sums of every process, and
        torchmetrics gathers the metrics' states from every process in ``compute``)."""
        loss_sum, rows = self._sum_over_processes(self._eval_sums).tolist()
        self._eval_sums.zero_()
        self.eval_rows = int(rows)
        values = {f"{prefix}/loss": loss_sum / rows if rows else float("nan")}
        values.update({name: float(value) for name, value in metrics.compute().items()})
        metrics.reset()
        return values

    def configure_optimizers(self) -> Any:
        spec = self.optimizer_spec
        params = list(self.parameters())
        if spec.name in ("adamw", "adam"):
            optimizer = adam_optimizer(spec, params)
        else:
            optimizer = torch.optim.SGD(
                params,
                lr=spec.learning_rate,
                momentum=spec.momentum,
                weight_decay=spec.weight_decay,
                nesterov=spec.momentum > 0,
            )
        schedule = self.scheduler_spec
        if schedule.name == "none":
            return optimizer
        if schedule.name == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.max_epochs, 1))
        elif schedule.name == "onecycle":
            total = max(self.steps_per_epoch * self.max_epochs, 1)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=spec.learning_rate, total_steps=total
            )
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=metric_mode(self.monitor),
                factor=schedule.plateau_factor,
                patience=schedule.plateau_patience,
            )
        # Stepped by this module (manual optimisation): per step for one-cycle, per epoch otherwise.
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
