"""Signed distance to class boundaries, tanh-scaled (DaCapo's DistanceTask)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Unpack

import numpy as np

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.tasks.base import Params
from dacapo_hydra.tasks.binary import BinaryEvaluation
from dacapo_hydra.tasks.distance_instances import INSTANCE_CRITERION, DistanceInstances
from dacapo_hydra.tasks.scaled_distance import ScaledDistanceOptions, ScaledDistanceTask


class DistanceTask(DistanceInstances, BinaryEvaluation, ScaledDistanceTask):
    """Learn `tanh(d / scale_factor)` per class, d the signed distance (nm) to its boundary.

    Inside a class d > 0, outside d < 0, clipped to ±`clip_distance`. With
    `mask_distances`, a voxel weighs 0 where its distance can't be known from the
    crop (see :func:`~dacapo_hydra.tasks.distances.known_distance`). Weights are
    class-balanced per channel.

    Two outputs:

    - `instances: false` (semantic): post-processing thresholds the predicted
      distance (a grid of thresholds in nm); the output is binary masks
      (C, *spatial), scored with the binary metrics per class (criterion: dice).
    - `instances: true`: seeded watershed from the h-maxima of the predicted
      distance (or of the distance transform of the predicted mask) over the
      voxels inside the boundary (d > `foreground_distance`), so touching objects
      with a neck between them separate, then a size filter; grid: seed source,
      h (nm) and minimum sizes (voxels); the output is instance labels
      (C, *spatial) uint64, scored with the instance scores (criterion: detection_f1).

    Args:
        thresholds: semantic output: the distances swept as foreground thresholds
            (nm, or e.g. "1vx"). None: -1, -0.5, 0, 0.5 and 1 voxel.
        instances: whether post-processing gives instance labels.
        seed_h: instances: the h-maxima dynamics swept (nm or "0.5vx"). None: see
            :func:`~dacapo_hydra.tasks.instances.distance_watershed.h_grid`.
        min_sizes: instances: voxels; None: derived from the typical object's volume.
        foreground_distance: instances: the predicted boundary level (default 0 nm).
        criterion: score that picks the best iteration and parameters.
        **options: `channels`, `class_ids`, `scale_factor`, `clip_distance`,
            `tol_distance` (also the tolerance of the `*_with_tolerance` scores),
            `mask_distances`, `clip_min`, `clip_max` and `object_radius`, as
            :class:`~dacapo_hydra.tasks.scaled_distance.ScaledDistanceTask` takes them.

    """

    criterion = "dice"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        *,
        thresholds: Sequence[Length] | None = None,
        instances: bool = False,
        seed_h: Sequence[Length] | None = None,
        min_sizes: Sequence[int] | None = None,
        foreground_distance: Length | None = None,
        criterion: str | None = None,
        **options: Unpack[ScaledDistanceOptions],
    ) -> None:
        super().__init__(dims, voxel_size, **options)
        self.instances = bool(instances)
        self.thresholds = [
            to_nm(t, self.voxel_size, "task.thresholds")
            for t in (thresholds or self.voxel_grid(None, (-1, -0.5, 0, 0.5, 1)))
        ]
        self.init_instances(seed_h, (1, 2), min_sizes, foreground_distance, 0.0)
        self.set_criterion(criterion, INSTANCE_CRITERION if self.instances else "dice")

    def parameter_grid(self) -> list[Params]:
        """Instances: one set per h (nm) and minimum size; else one per threshold (nm)."""
        if self.instances:
            return self.instance_grid()
        return [{"threshold": t} for t in self.thresholds]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Instances (C, *spatial) uint64, or binary masks (C, *spatial) uint8 (see class)."""
        if self.instances:
            return self.filter_sizes(self.segment(prediction, params), params)
        return (prediction > self.scale(float(params["threshold"]))).astype(np.uint8)

    def post_process_grid(self, prediction: np.ndarray) -> Iterator[tuple[Params, np.ndarray]]:
        """Every parameter set with its output (instances: one watershed per h)."""
        if self.instances:
            return self.instance_grid_outputs(prediction)
        return super().post_process_grid(prediction)
