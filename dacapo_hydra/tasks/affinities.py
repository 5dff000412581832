"""Affinities between voxels and their neighbours, with optional LSDs (AffinitiesTask)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.config.units import Length
from dacapo_hydra.evaluation.instance import INSTANCE_SCORE_DIRECTIONS, instance_scores
from dacapo_hydra.tasks.balance import ClassBalancer
from dacapo_hydra.tasks.base import Params, Task
from dacapo_hydra.tasks.distance_instances import INSTANCE_CRITERION
from dacapo_hydra.tasks.instances.agglomeration import AffinityGraph, agglomerate, fragments
from dacapo_hydra.tasks.instances.distance_watershed import h_grid, mask_watershed
from dacapo_hydra.tasks.instances.mutex_watershed import mutex_watershed
from dacapo_hydra.tasks.instances.size_filter import min_size_grid, remove_small
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

    Post-processing has three routes, all swept at validation and ending with a
    size filter (objects under `min_size` voxels go), the output being instance
    labels (*spatial) uint64:

    - `{"route": "mutex", "bias": b, "min_size": m}`: mutex watershed (DaCapo's);
    - `{"route": "agglomeration", "threshold": t, "min_size": m}`: watershed
      fragments merged where the mean affinity of their shared boundary exceeds t
      (the LSD pipeline on a region graph;
      :mod:`~dacapo_hydra.tasks.instances.agglomeration`); blockwise, the region
      graph is the whole volume's, so the merges across blocks look at the affinities;
    - `{"route": "mask", "h": h, "min_size": m}`: the foreground (mean nearest-
      neighbour affinity above 0.5) split at its necks by a watershed from the
      h-maxima (nm) of its distance transform
      (:func:`~dacapo_hydra.tasks.instances.distance_watershed.mask_watershed`),
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
        biases: mutex watershed: affinities at which edges turn attractive, swept.
        merge_thresholds: agglomeration: mean affinities at which merging stops, swept
            (empty: no agglomeration route).
        seed_h: mask route: the h-maxima dynamics swept (nm or e.g. "0.5vx"); None: see
            :func:`~dacapo_hydra.tasks.instances.distance_watershed.h_grid`; empty: no
            mask route.
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
        biases: Sequence[float] = (0.3, 0.5, 0.7),
        merge_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        seed_h: Sequence[Length] | None = None,
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
        self.biases = [float(b) for b in biases]
        if not self.biases or not all(0 < b < 1 for b in self.biases):
            raise ValueError(f"task.biases: need values in (0, 1), got {self.biases}")
        self.merge_thresholds = [float(t) for t in merge_thresholds]
        if not all(0 < t < 1 for t in self.merge_thresholds):
            raise ValueError(
                f"task.merge_thresholds: need values in (0, 1), got {self.merge_thresholds}"
            )
        self.min_sizes = min_size_grid(min_sizes, self.object_radius, self.voxel_size)
        self.seed_h = (
            []
            if seed_h is not None and len(seed_h) == 0
            else h_grid(seed_h, self.voxel_size, self.object_radius)
        )
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

    def parameter_grid(self) -> list[Params]:
        """Mutex watershed biases, then agglomeration thresholds, each with every size."""
        return (
            [
                {"route": "mutex", "bias": b, "min_size": m}
                for b in self.biases
                for m in self.min_sizes
            ]
            + [
                {"route": "agglomeration", "threshold": t, "min_size": m}
                for t in self.merge_thresholds
                for m in self.min_sizes
            ]
            + [
                {"route": "mask", "h": h, "min_size": m}
                for h in self.seed_h
                for m in self.min_sizes
            ]
        )

    def foreground(self, affinities: np.ndarray) -> np.ndarray:
        """Where the mean nearest-neighbour affinity exceeds 0.5 (background has 0 to all)."""
        nearest = [i for i, o in enumerate(self.neighborhood) if sum(map(abs, o)) == 1]
        return affinities[nearest or list(range(len(self.neighborhood)))].mean(axis=0) > 0.5

    def _segment(self, affinities: np.ndarray, params: Params) -> np.ndarray:
        route = params.get("route", "mutex")
        if route == "mutex":
            return mutex_watershed(affinities, self.neighborhood, float(params["bias"]))
        if route == "agglomeration":
            threshold = float(params["threshold"])
            frags = fragments(affinities, self.neighborhood, self.voxel_size)
            return agglomerate(frags, affinities, self.neighborhood, [threshold])[threshold]
        if route == "mask":
            return mask_watershed(
                self.foreground(affinities), self.voxel_size, h=float(params["h"])
            )
        raise KeyError(
            f"affinities: route must be 'mutex', 'agglomeration' or 'mask', got {route!r}"
        )

    def graph_route(self, params: Params) -> AffinityGraph | None:
        """The agglomeration route as a region graph solved globally (None for the others)."""
        if params.get("route", "mutex") != "agglomeration":
            return None
        offsets = tuple(tuple(o) for o in self.neighborhood)
        return AffinityGraph(offsets, self.voxel_size, float(params["threshold"]))

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Instances (*spatial) uint64 by the route `params` names, size-filtered."""
        labels = self._segment(prediction[: self.num_affinities], params)
        return remove_small(labels, int(params.get("min_size", 0)))

    def post_process_grid(self, prediction: np.ndarray) -> Iterator[tuple[Params, np.ndarray]]:
        """Every parameter set with its instances; fragments and merging run once."""
        affinities = prediction[: self.num_affinities]
        for b in self.biases:
            labels = mutex_watershed(affinities, self.neighborhood, b)
            for m in self.min_sizes:
                yield {"route": "mutex", "bias": b, "min_size": m}, remove_small(labels, m)
        if self.merge_thresholds:
            frags = fragments(affinities, self.neighborhood, self.voxel_size)
            merged = agglomerate(frags, affinities, self.neighborhood, self.merge_thresholds)
            for t in self.merge_thresholds:
                for m in self.min_sizes:
                    params = {"route": "agglomeration", "threshold": t, "min_size": m}
                    yield params, remove_small(merged[t], m)
        foreground = self.foreground(affinities)
        for h in self.seed_h:
            labels = mask_watershed(foreground, self.voxel_size, h=h)
            for m in self.min_sizes:
                yield {"route": "mask", "h": h, "min_size": m}, remove_small(labels, m)

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Instance scores of the segmentation against the ground-truth instances."""
        return instance_scores(output, gt, mask, self.voxel_size)

    def score_directions(self) -> dict[str, bool]:
        """Instance score directions."""
        return dict(INSTANCE_SCORE_DIRECTIONS)
