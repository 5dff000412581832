"""A trained network as one `nn.Module`: backbone, 1x1 head, the task's activation."""

from __future__ import annotations

import torch
from torch import nn

from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.model.spec import ModelSpec
from dacapo_hydra.tasks.base import Task


class TrainedModel(nn.Module):
    """Network = architecture + 1x1 head with the task's channels; forward predicts.

    Its state dict (`architecture.*`, `head.*`) is what a checkpoint stores: the
    LightningModule that trains it writes its checkpoints in this layout.

    Args:
        architecture: the backbone network.
        task: supplies the head's channels and the activation (and post-processing).
        spec: the facts the network was built for (its `out_channels` is filled in).

    """

    def __init__(self, architecture: Architecture, task: Task, spec: ModelSpec) -> None:
        super().__init__()
        self.architecture = architecture
        conv = nn.Conv3d if architecture.dims == 3 else nn.Conv2d
        self.head = conv(architecture.out_channels, task.num_channels, kernel_size=1)
        self.task = task
        self.spec = spec.with_out_channels(task.num_channels)

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw network output (logits or linear values) for a raw batch."""
        return self.head(self.architecture(raw))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """The prediction: network output mapped by the task's activation."""
        return self.task.activation(self.logits(raw))
