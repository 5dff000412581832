"""The LightningModule: an architecture, a task head, the task's loss, an optimiser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.tasks.base import Task


class RunModule(pl.LightningModule):
    """Network = architecture + 1x1 head with the task's channels; loss from the task.

    Args:
        architecture: the backbone network.
        task: supplies the head's channels, the loss and the inference activation.
        optimizer: a partial optimiser taking the parameters.
        scheduler: a partial LR scheduler taking the optimiser (stepped every iteration).
        config: the composed run config (plain containers), stored in checkpoints.
        meta: data facts the network is built for (dims, in_channels, voxel sizes),
            stored in checkpoints so a model can be rebuilt without its data.

    """

    def __init__(
        self,
        architecture: Architecture,
        task: Task,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        config: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        conv = nn.Conv3d if architecture.dims == 3 else nn.Conv2d
        self.head = conv(architecture.out_channels, task.num_channels, kernel_size=1)
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.save_hyperparameters({"config": config or {}, "meta": meta or {}}, logger=False)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw network output (logits or linear values) for a raw batch."""
        return self.head(self.architecture(raw))

    def predict(self, raw: torch.Tensor) -> torch.Tensor:
        """Network output mapped by the task's activation."""
        return self.task.activation(self(raw))

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.loss(self(batch["raw"]), batch["target"], batch["weight"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimiser step's loss, logged as `train/loss`."""
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["raw"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Loss on the fixed validation crops, logged as `val/loss` (averaged over DDP ranks)."""
        loss = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["raw"].shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self) -> Any:
        """The configured optimiser, and its per-iteration schedule if any."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }
