"""Affinities between voxels and their neighbours (DaCapo's AffinitiesTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.tasks.base import Task, balance_weights


def shifted_pairs(
    shape: Sequence[int], offset: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index pairs (here, there) so that `there` = `here` + `offset`, both inside `shape`."""
    here, there = [], []
    for size, o in zip(shape, offset, strict=True):
        here.append(slice(max(0, -o), size - max(0, o)))
        there.append(slice(max(0, o), size - max(0, -o)))
    return tuple(here), tuple(there)


class AffinitiesTask(Task):
    """Learn whether each voxel and its neighbour at each offset share an object.

    Channel i holds the affinity between voxel x and x + neighborhood[i] (voxels,
    z y x). Background (label 0) has affinity 0 to everything unless
    `background_as_object`. Edges leaving the crop or touching unannotated voxels
    weigh 0; the rest are class-balanced per channel.

    Args:
        neighborhood: offsets in voxels; default one step back along each axis.
        clip_min: lower clip of the affinity frequency for class balancing.
        clip_max: upper clip.
        background_as_object: treat background as one more object.

    """

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        neighborhood: Sequence[Sequence[int]] | None = None,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
        background_as_object: bool = False,
    ) -> None:
        super().__init__(dims, voxel_size)
        if neighborhood is None:
            neighborhood = [[-1 if i == d else 0 for i in range(dims)] for d in range(dims)]
        self.neighborhood = [tuple(int(v) for v in off) for off in neighborhood]
        for off in self.neighborhood:
            if len(off) != dims or not any(off):
                raise ValueError(
                    f"task.neighborhood: offset {list(off)} must have {dims} entries, not all 0"
                )
        if not 0 < clip_min <= clip_max < 1:
            raise ValueError(f"task: need 0 < clip_min <= clip_max < 1, got {clip_min}, {clip_max}")
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.background_as_object = background_as_object

    @property
    def num_channels(self) -> int:
        """One channel per neighbourhood offset."""
        return len(self.neighborhood)

    def affinities(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Affinities (C, *spatial) and where they are known (C, *spatial)."""
        affs = np.zeros((self.num_channels, *gt.shape), np.float32)
        known = np.zeros((self.num_channels, *gt.shape), bool)
        annotated = mask.astype(bool)
        for c, off in enumerate(self.neighborhood):
            here, there = shifted_pairs(gt.shape, off)
            same = gt[here] == gt[there]
            if not self.background_as_object:
                same &= gt[here] != 0
            affs[c][here] = same
            known[c][here] = annotated[here] & annotated[there]
        return affs, known

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Affinities and class-balanced weights, 0 where an edge is unknown."""
        affs, known = self.affinities(gt, mask)
        return affs, balance_weights(affs > 0.5, known, self.clip_min, self.clip_max)

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted binary cross-entropy on logits."""
        return F.binary_cross_entropy_with_logits(prediction, target, weight=weight)

    def activation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Sigmoid: logits to affinities in [0, 1]."""
        return torch.sigmoid(prediction)
