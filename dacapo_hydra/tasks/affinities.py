"""Affinities between voxels and their neighbours, with optional LSDs (AffinitiesTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.evaluation.instance import INSTANCE_SCORE_DIRECTIONS, instance_scores
from dacapo_hydra.tasks.base import ClassBalancer, Params, Task
from dacapo_hydra.tasks.lsds import local_shape_descriptors, num_lsd_channels
from dacapo_hydra.tasks.post_processing import mutex_watershed
from dacapo_hydra.tasks.shifts import shifted_pairs


class AffinitiesTask(Task):
    """Learn whether each voxel and its neighbour at each offset share an object.

    Channel i holds the affinity between voxel x and x + neighborhood[i] (voxels,
    z y x); long-range offsets are allowed. Background (label 0) has affinity 0 to
    everything unless `background_as_object`. Edges leaving the crop or touching
    unannotated voxels weigh 0; the rest are class-balanced per channel. With
    `lsds`, local shape descriptors (sigma = `num_lsd_voxels` times the largest
    voxel size, as DaCapo) follow the affinities as auxiliary channels, weighted
    by foreground balance and the mask. Post-processing is mutex watershed with a
    grid of biases; the output is instance labels (*spatial) uint64.

    Args:
        neighborhood: offsets in voxels; default one step back along each axis.
        clip_min: lower clip of the affinity frequency for class balancing.
        clip_max: upper clip.
        background_as_object: treat background as one more object.
        lsds: also learn local shape descriptors.
        num_lsd_voxels: LSD sigma in voxels of the largest voxel size.
        downsample_lsds: compute LSDs on every n-th voxel per axis, for speed.
        lsds_to_affs_weight_ratio: weight of the LSD loss relative to the affinities'.
        lsd_clip_min: lower clip of the foreground frequency for the LSD weights.
        lsd_clip_max: upper clip.
        biases: affinities at which edges turn attractive, swept in post-processing.
        criterion: score that picks the best iteration and bias.

    """

    criterion = "voi"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        neighborhood: Sequence[Sequence[int]] | None = None,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
        background_as_object: bool = False,
        lsds: bool = False,
        num_lsd_voxels: int = 10,
        downsample_lsds: int = 1,
        lsds_to_affs_weight_ratio: float = 1.0,
        lsd_clip_min: float = 0.05,
        lsd_clip_max: float = 0.95,
        biases: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        criterion: str | None = None,
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
        if num_lsd_voxels < 1 or downsample_lsds < 1 or lsds_to_affs_weight_ratio < 0:
            raise ValueError(
                f"task: num_lsd_voxels ({num_lsd_voxels}) and downsample_lsds "
                f"({downsample_lsds}) must be at least 1, lsds_to_affs_weight_ratio "
                f"({lsds_to_affs_weight_ratio}) not negative"
            )
        self.biases = [float(b) for b in biases]
        if not self.biases or not all(0 < b < 1 for b in self.biases):
            raise ValueError(f"task.biases: need values in (0, 1), got {self.biases}")
        self.balancer = ClassBalancer(len(self.neighborhood), 2, clip_min, clip_max)
        self.background_as_object = background_as_object
        self.lsds = lsds
        self.lsd_sigma = (num_lsd_voxels * max(self.voxel_size),) * dims
        self.downsample_lsds = downsample_lsds
        self.lsds_to_affs_weight_ratio = lsds_to_affs_weight_ratio
        self.lsd_balancer = ClassBalancer(1, 2, lsd_clip_min, lsd_clip_max)
        if criterion is not None:
            self.criterion = criterion
        self.check_criterion()

    @property
    def num_affinities(self) -> int:
        """Affinity channels: one per neighbourhood offset."""
        return len(self.neighborhood)

    @property
    def num_channels(self) -> int:
        """Affinities, then the LSD channels if learned."""
        return self.num_affinities + (num_lsd_channels(self.dims) if self.lsds else 0)

    def affinities(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Affinities (C, *spatial) and where they are known (C, *spatial)."""
        affs = np.zeros((self.num_affinities, *gt.shape), np.float32)
        known = np.zeros((self.num_affinities, *gt.shape), bool)
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
        """Affinities (and LSDs) with class-balanced weights, 0 where unknown."""
        affs, known = self.affinities(gt, mask)
        weight = self.balancer(affs > 0.5, known)
        if not self.lsds:
            return affs, weight
        lsds = local_shape_descriptors(gt, self.lsd_sigma, self.voxel_size, self.downsample_lsds)
        lsd_weight = self.lsd_balancer((gt != 0)[None], mask.astype(bool)[None])
        lsd_weight = np.broadcast_to(lsd_weight, lsds.shape)
        return np.concatenate([affs, lsds]), np.concatenate([weight, lsd_weight])

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted binary cross-entropy on logits; LSDs add theirs times the ratio."""
        n = self.num_affinities
        loss = F.binary_cross_entropy_with_logits(prediction[:, :n], target[:, :n], weight[:, :n])
        if self.lsds:
            loss = loss + self.lsds_to_affs_weight_ratio * F.binary_cross_entropy_with_logits(
                prediction[:, n:], target[:, n:], weight[:, n:]
            )
        return loss

    def activation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Sigmoid: logits to affinities (and LSDs) in [0, 1]."""
        return torch.sigmoid(prediction)

    def parameter_grid(self) -> list[Params]:
        """One parameter set per mutex watershed bias."""
        return [{"bias": b} for b in self.biases]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Instances (*spatial) uint64 by mutex watershed on the affinity channels."""
        return mutex_watershed(
            prediction[: self.num_affinities], self.neighborhood, float(params["bias"])
        )

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Instance scores of the segmentation against the ground-truth instances."""
        return instance_scores(output, gt, mask)

    def score_directions(self) -> dict[str, bool]:
        """Instance score directions."""
        return dict(INSTANCE_SCORE_DIRECTIONS)
