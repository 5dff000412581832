"""The network as applied: architecture, task head and the task's activation in one module.

What export writes as a program and MLflow logs as the run's model: normalised raw
in, the task's prediction out (distances, affinities, probabilities).

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Task:
    ...     activation = staticmethod(torch.sigmoid)
    >>> network = InferenceNetwork(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1), Task())
    >>> tuple(network(torch.zeros(1, 1, 8, 8)).shape)
    (1, 2, 6, 6)

"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class InferenceNetwork(nn.Module):
    """Network, head and the task's activation: raw (normalised) in, prediction out.

    Args:
        architecture: the network (features out).
        head: the task's head (features to the task's channels).
        task: anything with an `activation` (tensor to tensor), e.g. a task.

    """

    def __init__(self, architecture: nn.Module, head: nn.Module, task: Any) -> None:
        super().__init__()
        self.architecture = architecture
        self.head = head
        self._activation = task.activation

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Prediction for a (N, C, *spatial) normalised raw batch."""
        return self._activation(self.head(self.architecture(raw)))
