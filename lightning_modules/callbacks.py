"""Callbacks the studio's training uses: keep the best weights, log to MLflow, report progress, cancel,
save a checkpoint at the end of every epoch; and two test-only switches."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint


def optimizer_steps(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """Optimiser steps so far: the module's own count when it keeps one (the tabular module steps its
    raw optimiser itself), else Lightning's global step."""
    return getattr(pl_module, "optimizer_steps", None) or trainer.global_step


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer is finite (one host sync)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point() and t.numel()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def agreed(trainer: pl.Trainer, decision: bool, *, every: bool = False) -> bool:
    """One decision for every process training together (DDP): true when any process's is (``every``:
    when all are). Every process must ask at the same point; with one process it is the decision itself.

    Decisions that come only from rank 0 (a cancel request: the other processes have no job to ask) or
    from local state (a weight that overflowed on one device) go through here, so that no process goes
    on to the next step while another stops, which would leave it waiting for the others for ever."""
    if trainer.world_size <= 1:
        return decision
    return bool(trainer.strategy.reduce_boolean_decision(bool(decision), all=every))


def from_rank_zero(trainer: pl.Trainer, decision: bool) -> bool:
    """Rank 0's decision, for every process (DDP); the decision itself with one process."""
    if trainer.world_size <= 1:
        return decision
    return bool(trainer.strategy.broadcast(bool(decision), src=0))


class TrainingCancelledSignal(Exception):
    """Raised inside the training loop when the user asked to stop; caught by ``studio.engine.training``."""


class TrainingDivergedSignal(Exception):
    """Raised inside the training loop as soon as a loss is NaN or infinite (the weights are then
    useless: every later step only spreads the NaN); caught by ``studio.engine.training``.

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
            self.stopped = True

    stopped = False  # early stopping ended the run (kept in checkpoints: a resumed run stops there too)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the best epoch, its metrics and weights (on the CPU), and whether
        early stopping has ended the run."""
        state = None if self.best_state is None else {k: v.detach().cpu() for k, v in self.best_state.items()}
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_metrics": dict(self.best_metrics),
            "best_state": state,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
        self.best_metrics = dict(state_dict["best_metrics"])
        self.best_state = state_dict["best_state"]
        self.stopped = bool(state_dict.get("stopped", False))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stopped:  # resumed after early stopping had ended the run: train no further
            trainer.should_stop = True

    def restore(self, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)  # copies onto the module's device

    def best_state_is_finite(self) -> bool:
        """Whether a best state was kept and all its floating-point values are finite (one host sync)."""
        if self.best_state is None:
            return False
        floats = [t for t in self.best_state.values() if t.is_floating_point() and t.numel()]
        return not floats or bool(torch.stack([torch.isfinite(t).all() for t in floats]).all())


class TrainingReporter(pl.Callback):
    """Sends metrics to MLflow (batched) and progress to the caller; polls for cancellation.

    ``train/loss`` (the mean since the previous point) is logged about ``points_per_epoch`` times per
    epoch, ``val/*`` after each validation; the buffer is written right after the first point and the
    first epoch, then every ``flush_seconds`` (and at the end), so live curves appear quickly.

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
        # Points logged since the last checkpoint: MLflow is written in the background, so a worker
        # killed just after a checkpoint may not have written them; a resumed run logs them again
        # (points MLflow already holds are dropped by the metric buffer).
        self.journal: list[tuple[dict[str, float], int]] = []
        self._replay: list[tuple[dict[str, float], int]] = []

    def _log(self, metrics: dict[str, float], step: int) -> None:
        self.journal.append((dict(metrics), step))
        self.log_metrics(metrics, step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_logged_step": self.last_logged_step,
            "epoch_seconds": list(self.epoch_seconds),
            "journal": [(dict(metrics), step) for metrics, step in self.journal],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_logged_step = int(state_dict["last_logged_step"])
        self.epoch_seconds = list(state_dict["epoch_seconds"])
        self._replay = [(dict(metrics), int(step)) for metrics, step in state_dict["journal"]]

    def checkpoint_written(self) -> None:
        """Everything logged so far is in a checkpoint's journal or was written before it."""
        self.journal.clear()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        replay, self._replay = self._replay, []
        for metrics, step in replay:
            self._log(metrics, step)
        if replay:
            self.flush()

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
        # With DDP only rank 0 is asked (its hooks follow the job); every process stops at the same step.
        if agreed(trainer, self.should_stop()):
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
        self._log({"train/loss": loss}, step)
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
        # batch norm's running statistics can overflow while losses stay finite
        if not agreed(trainer, all_finite(pl_module), every=True):
            raise TrainingDivergedSignal(trainer.current_epoch + 1, math.inf, "weights")
        metrics["epoch"] = float(trainer.current_epoch + 1)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        if optimizer is not None:
            metrics["learning_rate"] = float(optimizer.param_groups[0]["lr"])
        self.latest.update(metrics)
        self._log(metrics, optimizer_steps(trainer, pl_module))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_window(optimizer_steps(trainer, pl_module))  # the epoch's last steps
        epoch_stats = {}
        accuracy = pl_module.pop_train_accuracy()
        if accuracy is not None:
            epoch_stats["train/accuracy"] = accuracy
        if epoch_stats:
            self.latest.update(epoch_stats)
            self._log(epoch_stats, optimizer_steps(trainer, pl_module))
        now = time.monotonic()
        # The first epoch's points are written at once; later ones at most every ``flush_seconds``: on
        # a small table an epoch takes a tenth of a second, and each write (SQLite, on the writer thread)
        # took a core from training for several milliseconds, about 3% of the fit in all.
        if not self.epoch_seconds or now - self.last_flush >= self.flush_seconds:
            self.flush()
            self.last_flush = now
        if self.epoch_started is not None:
            self.epoch_seconds.append(now - self.epoch_started)
            self.epoch_started = None
        self._progress(trainer, pl_module, force=True)


# --------------------------------------------------------------------------- checkpoints
def tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a (nested) state dict."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return 0


def rng_states() -> dict[str, Any]:
    """The global random generators' states (dropout and the like draw from them)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):  # resumed on another number of GPUs
            torch.cuda.set_rng_state_all(states["cuda"])


class EpochCheckpoint(Checkpoint):
    """Saves the run's whole training state at the end of every epoch, so that a run whose worker died
    can continue from there and end exactly as a straight run would.

    The file (``path_for(epoch)``) holds Lightning's checkpoint: the weights, the optimiser and the
    learning-rate schedule, the loop counters, every callback's state (the best epoch and its weights,
    early stopping, the metrics not yet confirmed written), the DataModule's data-order state, and here
    the global random generators and the studio's ``settings`` (batch size, gradient accumulation). It is
    written to a temporary file beside it, flushed to disk and renamed over, so a crash never leaves half
    a checkpoint; then older epochs' files are removed (only the latest is kept; it holds the best epoch's
    weights too, so the two can never disagree).

    A :class:`Checkpoint` subclass runs its ``on_train_epoch_end`` after the LightningModule's, which
    steps the epoch-wise learning-rate schedules: the saved schedule is the one the next epoch uses.

    ``check_space(needed_bytes, folder)`` is called first and raises when the disk is too full. With
    ``min_seconds``, an epoch that ends sooner than that after the previous checkpoint (or the start)
    writes none: a checkpoint costs ~20 ms even for a tiny network, a lot beside epochs of a few tens
    of milliseconds, and a resumed run then redoes at most that many seconds of training.
    """

    def __init__(
        self,
        path_for: Callable[[int], Path],
        check_space: Callable[[int, Path], None],
        settings: dict[str, Any],
        on_written: Callable[[], None] | None = None,
        min_seconds: float = 0.0,
    ):
        self.path_for = path_for
        self.check_space = check_space
        self.settings = dict(settings)
        self.on_written = on_written
        self.min_seconds = min_seconds
        self._last = time.monotonic()  # the previous checkpoint (or the start of training)
        self.written: Path | None = None
        self.seconds = 0.0  # spent writing checkpoints
        self.bytes = 0  # size of the last one
        self._rng: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states(), "settings": dict(self.settings)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng = state_dict.get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.monotonic()
        if self._rng is not None:  # resumed: the generators continue where the saved run left them
            set_rng_states(self._rng)
            self._rng = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # With DDP, rank 0's clock decides: saving is a step every process takes together.
        if not from_rank_zero(trainer, time.monotonic() - self._last >= self.min_seconds):
            return
        self.save(trainer, trainer.current_epoch + 1)
        self._last = time.monotonic()

    def save(self, trainer: pl.Trainer, epoch: int) -> Path:
        started = time.perf_counter()
        path = self.path_for(epoch)
        if not trainer.is_global_zero:  # DDP: only rank 0 writes; the others take part in the save
            trainer.save_checkpoint(path.with_name(f".{path.name}.rank{trainer.global_rank}"))
            return path
        # The file holds the model and optimiser state plus the best epoch's weights: at most twice
        # the model and optimiser state.
        optimizers = sum(tensor_bytes(o.state_dict()) for o in trainer.optimizers)
        needed = 2 * (tensor_bytes(trainer.lightning_module.state_dict()) + optimizers)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.check_space(needed, path.parent)
        temporary = path.with_name(f".{path.name}.partial")
        try:
            trainer.save_checkpoint(temporary)
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        for old in path.parent.glob("epoch-*.ckpt"):
            if old != path:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        self.written = path
        self.bytes = path.stat().st_size
        self.seconds += time.perf_counter() - started
        if self.on_written is not None:
            self.on_written()
        return path


# --------------------------------------------------------------------------- test-only switches
class InjectedOutOfMemory(pl.Callback):
    """Test-only (``STUDIO_TEST_OOM_AT_STEP``): raises the out-of-memory error the device would raise
    (CUDA's ``OutOfMemoryError`` on a GPU, the CPU allocator's ``RuntimeError`` otherwise) at the first
    training batch that starts at or after optimiser step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if optimizer_steps(trainer, pl_module) < self.step:
            return
        where = "(injected by STUDIO_TEST_OOM_AT_STEP)"
        if pl_module.device.type == "cuda":
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB {where}")
        raise RuntimeError(
            f"[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
            f"allocate 2147483648 bytes. Error code 12 (Cannot allocate memory) {where}"
        )


class SlowEpochs(pl.Callback):
    """Test-only (``STUDIO_TEST_SLOW_EPOCHS``): each epoch waits ``seconds`` at its end, before its
    checkpoint is written, so a test can stop a worker in the middle of a run."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(self.seconds)
