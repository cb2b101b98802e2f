"""The LightningModule for pictures: the tabular module's metrics, optimiser and schedules (manual
optimisation, stepped by the module), fed with one picture tensor per batch instead of number and
category columns. It receives its network ready-made (from the registry) and keeps the test split's
probabilities for the confusion matrix and the gallery of mistakes (with several processes, DDP:
gathered from every process, so they cover the whole test split in its order)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from lightning_modules.tabular.module import TabularLightningModule
from studio.core.spec import OptimizerSpec, SchedulerSpec


class ImageLightningModule(TabularLightningModule):
    """Batches are ``(normalised pictures [B, 3, S, S], class indices [B])``.

    ``frozen`` lists normalisation layers of a frozen backbone: they stay in eval mode while training
    so that their running statistics do not drift either.
    """

    def __init__(
        self,
        net: nn.Module,
        n_classes: int,
        optimizer: OptimizerSpec,
        scheduler: SchedulerSpec,
        monitor: str,
        max_epochs: int,
        steps_per_epoch: int = 1,
        gradient_clip: float = 0.0,
        frozen: Sequence[nn.Module] = (),
        accumulate: int = 1,
    ):
        super().__init__(
            net,
            "classification",
            n_classes,
            optimizer,
            scheduler,
            monitor,
            max_epochs,
            steps_per_epoch=steps_per_epoch,
            gradient_clip=gradient_clip,
            accumulate=accumulate,
        )
        self._frozen = list(frozen)  # a plain list: these modules are already registered inside ``net``
        self.test_probabilities: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.net(x)

    def train(self, mode: bool = True) -> ImageLightningModule:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning does not call ``train()`` when fitting starts (a new module's layers are all in
        # training mode) and only puts back each layer's mode after validating, so the frozen layers
        # are put in eval mode here, or their running statistics would drift in the first epoch.
        for module in self._frozen:
            module.eval()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:  # type: ignore[override]
        """One optimiser step per batch (a CNN step outweighs Lightning's per-batch bookkeeping)."""
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.scheduler_spec.name == "onecycle" else None
        x, y = batch
        out = self(x)
        loss = F.cross_entropy(out.float(), y)
        last = self.accumulate > 1 and batch_idx == self.trainer.num_training_batches - 1
        self._step(optimizer, scheduler, loss, out, y, plain=self.full_precision, last=last)

    def _scores(
        self, metrics: torchmetrics.MetricCollection, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        out = self(x)
        probabilities = out.float().softmax(-1)
        metrics.update(probabilities, y)
        return F.cross_entropy(out.float(), y), probabilities

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not len(batch[1]):  # DDP: this process's share of the pictures ran out before the others'
            return
        loss, _ = self._scores(self.val_metrics, batch)
        self._add_eval_loss(loss, len(batch[1]))
        self._count_val_labels(batch[1])

    def on_test_epoch_start(self) -> None:
        self.test_probabilities = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not len(batch[1]):  # DDP: this process's share of the pictures ran out before the others'
            return
        loss, probabilities = self._scores(self.test_metrics, batch)
        self.test_probabilities.append(probabilities.detach().cpu())
        self._add_eval_loss(loss, len(batch[1]))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.distributed:
            self.test_probabilities = [self._gather_rows(self.test_probabilities)]

    def _gather_rows(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Every process's test probabilities, in the test split's order (process ``r`` holds the
        ``r``-th consecutive share of it, see ``ImageBatches``), on every process. ``all_gather``
        needs tensors of one shape: each share is padded to the longest and trimmed after."""
        import torch.distributed as dist

        def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
            gathered = [torch.empty_like(tensor) for _ in range(self.trainer.world_size)]
            dist.all_gather(gathered, tensor.contiguous())
            return gathered

        mine = torch.cat(parts) if parts else torch.zeros((0, self.n_classes))
        mine = mine.float().to(self.device)
        lengths = [int(n) for n in all_gather(torch.tensor([len(mine)], device=self.device))]
        padded = torch.zeros((max(lengths), self.n_classes), device=self.device)
        padded[: len(mine)] = mine
        shares = all_gather(padded)
        return torch.cat([share[:length] for share, length in zip(shares, lengths, strict=True)]).cpu()
