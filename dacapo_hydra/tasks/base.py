"""The interface every task implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch


class Task(ABC):
    """What is learned: targets and weights from ground truth, a loss, an activation.

    Args:
        dims: spatial dimensions of the data.
        voxel_size: ground-truth voxel size in nm (z, y, x).

    """

    def __init__(self, dims: int, voxel_size: Sequence[float]) -> None:
        self.dims = dims
        self.voxel_size = tuple(float(v) for v in voxel_size)
        if len(self.voxel_size) != dims:
            raise ValueError(f"task: voxel_size {self.voxel_size} does not have {dims} entries")

    @property
    @abstractmethod
    def num_channels(self) -> int:
        """Output channels the network's head must produce."""

    @abstractmethod
    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets and weights, each (channels, *spatial) float32, from one crop.

        Args:
            gt: instance or class labels of the crop, (*spatial) integers.
            mask: 1 where the ground truth is annotated, (*spatial).

        """

    @abstractmethod
    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted loss of raw network output against targets (N, C, *spatial)."""

    def activation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Map raw network output to the target's range at inference (identity by default)."""
        return prediction


def balance_weights(
    positive: np.ndarray, mask: np.ndarray, clip_min: float, clip_max: float
) -> np.ndarray:
    """Class-balancing weights as DaCapo computes them, per channel.

    The foreground frequency among masked voxels is clipped to [clip_min, clip_max];
    foreground voxels weigh 1/(2 f), background 1/(2 (1 - f)); unmasked voxels 0.

    Args:
        positive: (C, *spatial) booleans, foreground per channel.
        mask: (C, *spatial) or (*spatial), 1 where the target is known.

    """
    mask = np.broadcast_to(mask, positive.shape).astype(np.float32)
    weights = np.zeros(positive.shape, np.float32)
    for c in range(positive.shape[0]):
        known = mask[c].sum()
        if known == 0:
            continue
        freq = float(np.clip((positive[c] * mask[c]).sum() / known, clip_min, clip_max))
        weights[c] = np.where(positive[c], 1 / (2 * freq), 1 / (2 * (1 - freq))) * mask[c]
    return weights
