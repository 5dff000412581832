"""Affinities between voxels and their neighbours, with optional LSDs (AffinitiesTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.evaluation.instance import INSTANCE_SCORE_DIRECTIONS, instance_scores
from dacapo_hydra.tasks.balance import ClassBalancer
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.tasks.distance_instances import INSTANCE_CRITERION
from dacapo_hydra.tasks.instances.agglomeration import Agglomeration
from dacapo_hydra.tasks.instances.distance_watershed import MaskWatershed
from dacapo_hydra.tasks.instances.mutex_watershed import MutexWatershed
from dacapo_hydra.tasks.instances.route import Route, RouteSpec
from dacapo_hydra.tasks.instances.size_filter import min_size_grid
from dacapo_hydra.tasks.lsds import (
    local_shape_descriptors,
    lsd_channel_names,
    num_lsd_channels,
)
from dacapo_hydra.tasks.shifts import shifted_pairs


def default_neighborhood(
    dims: int, voxel_size: Sequence[float], object_radius: float | None
) -> list[list[int]]:
    """Nearest neighbours, and per axis a step of half the object radius (2 to 8 voxels).

    Examples:
        >>> default_neighborhood(2, (250.0, 250.0), 3000.0)
        [[-1, 0], [0, -1], [-6, 0], [0, -6]]
        >>> default_neighborhood(3, (1000.0, 250.0, 250.0), 3000.0)[3:]
        [[-2, 0, 0], [0, -6, 0], [0, 0, -6]]
        >>> len(default_neighborhood(3, (8.0, 8.0, 8.0), None))
        3

    """
    offsets = [[-1 if i == d else 0 for i in range(dims)] for d in range(dims)]
    if object_radius:
        for d, size in enumerate(voxel_size):
            step = min(8, round(0.5 * object_radius / size))
            if step >= 2:
                offsets.append([-step if i == d else 0 for i in range(dims)])
    return offsets


class AffinitiesTask(Task):
    """Learn whether each voxel and its neighbour at each offset share an object.

    Channel i holds the affinity between voxel x and x + neighborhood[i] (voxels,
    z y x); long-range offsets are allowed. Background (label 0) has affinity 0 to
    everything unless `background_as_object`. Edges leaving the crop or touching
    unannotated voxels weigh 0; the rest are class-balanced per channel. With
    `lsds`, local shape descriptors (sigma = `num_lsd_voxels` times the largest
    voxel size, as DaCapo) follow the affinities as auxiliary channels, weighted
    by foreground balance and the mask.

    Post-processing runs the task's `routes` on the affinity channels, all swept
    at validation and each ending with a size filter (objects under `min_size`
    voxels go); the output is instance labels (*spatial) uint64. The default
    routes, each a module of :mod:`~dacapo_hydra.tasks.instances`:

    - `{"route": "mutex", "bias": b, "min_size": m}`: mutex watershed (DaCapo's;
      :class:`~dacapo_hydra.tasks.instances.mutex_watershed.MutexWatershed`);
    - `{"route": "agglomeration", "threshold": t, "min_size": m}`: watershed
      fragments merged where the mean affinity of their shared boundary exceeds t
      (the LSD pipeline on a region graph;
      :class:`~dacapo_hydra.tasks.instances.agglomeration.Agglomeration`); blockwise,
      the region graph is the whole volume's, so the merges across blocks look at
      the affinities;
    - `{"route": "mask", "h": h, "min_size": m}`: the foreground (mean nearest-
      neighbour affinity above 0.5) split at its necks by a watershed from the
      h-maxima (nm) of its distance transform
      (:class:`~dacapo_hydra.tasks.instances.distance_watershed.MaskWatershed`),
      for objects wider than the network's field of view, whose boundaries with
      their neighbours the affinities cannot show.

    Args:
        neighborhood: offsets in voxels. None: one step back along each axis, plus a
            long-range step per axis of half the typical object's radius (2 to 8 voxels;
            none where that is under 2), so that mutex watershed has repulsive edges
            across the boundary between touching objects.
        clip_min: lower clip of the affinity frequency for class balancing.
        clip_max: upper clip.
        background_as_object: treat background as one more object.
        lsds: also learn local shape descriptors.
        num_lsd_voxels: LSD sigma in voxels of the largest voxel size.
        downsample_lsds: compute LSDs on every n-th voxel per axis, for speed.
        lsds_to_affs_weight_ratio: weight of the LSD loss relative to the affinities'.
        lsd_clip_min: lower clip of the foreground frequency for the LSD weights.
        lsd_clip_max: upper clip.
        routes: the post-processing routes, each with the values it sweeps. None:
            mutex watershed, agglomeration and mask watershed with their defaults.
        min_sizes: voxels; the minimum object sizes swept. None: 0 and 10 and
            25 % of the typical object's volume (measured on the training labels).
        criterion: score that picks the best iteration and parameters.
        object_radius: nm, the typical object's inscribed radius (see Task).

    """

    criterion = INSTANCE_CRITERION
    instances = True

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
        routes: Sequence[Route] | None = None,
        min_sizes: Sequence[int] | None = None,
        criterion: str | None = None,
        object_radius: float | None = None,
    ) -> None:
        super().__init__(dims, voxel_size, object_radius)
        if neighborhood is None:
            neighborhood = default_neighborhood(dims, self.voxel_size, self.object_radius)
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
        self.set_routes(
            (MutexWatershed(), Agglomeration(), MaskWatershed()) if routes is None else routes
        )
        self.min_sizes = min_size_grid(min_sizes, self.object_radius, self.voxel_size)
        self.balancer = ClassBalancer(len(self.neighborhood), 2, clip_min, clip_max)
        self.background_as_object = background_as_object
        self.lsds = lsds
        self.lsd_sigma = (num_lsd_voxels * max(self.voxel_size),) * dims
        self.downsample_lsds = downsample_lsds
        self.lsds_to_affs_weight_ratio = lsds_to_affs_weight_ratio
        self.lsd_balancer = ClassBalancer(1, 2, lsd_clip_min, lsd_clip_max)
        self.set_criterion(criterion)

    @property
    def num_affinities(self) -> int:
        """Affinity channels: one per neighbourhood offset."""
        return len(self.neighborhood)

    @property
    def num_channels(self) -> int:
        """Affinities, then the LSD channels if learned."""
        return self.num_affinities + (num_lsd_channels(self.dims) if self.lsds else 0)

    @property
    def channel_names(self) -> list[str]:
        """`affinity [dz, dy, dx]` per offset (voxels), then the LSD channels' names."""
        affinities = [f"affinity {list(off)}" for off in self.neighborhood]
        return affinities + (lsd_channel_names(self.dims) if self.lsds else [])

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

    @property
    def route_spec(self) -> RouteSpec:
        """Dims, voxel size, object radius and the neighbourhood (the affinities' offsets)."""
        return RouteSpec(self.dims, self.voxel_size, self.object_radius, tuple(self.neighborhood))

    def route_input(self, prediction: np.ndarray) -> np.ndarray:
        """The affinity channels (the LSDs are not post-processed)."""
        return prediction[: self.num_affinities]

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Instance scores of the segmentation against the ground-truth instances."""
        return instance_scores(output, gt, mask, self.voxel_size)

    def score_directions(self) -> dict[str, bool]:
        """Instance score directions."""
        return dict(INSTANCE_SCORE_DIRECTIONS)
