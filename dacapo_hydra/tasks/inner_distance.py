"""Distance from inside each object to its boundary, for instance seeds (InnerDistanceTask)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Unpack

import numpy as np

from dacapo_hydra.config.units import Length
from dacapo_hydra.tasks.base import Params
from dacapo_hydra.tasks.distance_instances import INSTANCE_CRITERION, DistanceInstances
from dacapo_hydra.tasks.distances import inner_distance
from dacapo_hydra.tasks.scaled_distance import ScaledDistanceOptions, ScaledDistanceTask


class InnerDistanceTask(DistanceInstances, ScaledDistanceTask):
    """Learn `tanh(d / scale_factor)`, d the distance (nm) from an object voxel to its boundary.

    Every object (instance) of a class has its own boundary, so touching objects are
    told apart; background is 0. Post-processing seeds instances where the predicted
    distance exceeds a seed distance (swept over a grid, nm), grows them by
    watershed over the predicted foreground and drops objects under a minimum size
    (swept too); the output is instance labels (C, *spatial) uint64, scored with the
    instance metrics per class.

    Args:
        seed_distances: the seed distances swept (nm, or e.g. "2vx"). None: 1, 1.5,
            2, 3 and 4 voxels.
        min_sizes: voxels; the minimum object sizes swept. None: 0 and 10 and
            25 % of the typical object's volume (measured on the training labels).
        foreground_distance: predicted distances above it are foreground. None: a
            quarter of the smallest voxel (object voxels are at least half a voxel in).
        criterion: score that picks the best iteration and parameters.
        **options: `channels`, `class_ids` (the ground truth must hold instance ids),
            `scale_factor`, `clip_distance`, `tol_distance`, `mask_distances`,
            `clip_min`, `clip_max` and `object_radius`, as
            :class:`~dacapo_hydra.tasks.scaled_distance.ScaledDistanceTask` takes them.

    """

    criterion = INSTANCE_CRITERION
    seed_key = "seed_distance"
    # Each object has its own boundary in the target: the prediction is the seed source.
    seed_sources = ("prediction",)

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        *,
        seed_distances: Sequence[Length] | None = None,
        min_sizes: Sequence[int] | None = None,
        foreground_distance: Length | None = None,
        criterion: str | None = None,
        **options: Unpack[ScaledDistanceOptions],
    ) -> None:
        super().__init__(dims, voxel_size, **options)
        self.init_instances(
            seed_distances,
            (1, 1.5, 2, 3, 4),
            min_sizes,
            foreground_distance,
            0.25 * min(self.voxel_size),
        )
        self.set_criterion(criterion)

    @property
    def seed_distances(self) -> list[float]:
        """The seed distances swept (nm)."""
        return self.seed_values

    @property
    def channel_names(self) -> list[str]:
        """`inner distance <class>` per channel."""
        return [f"inner distance {name}" for name in self.classes.names]

    @property
    def output_range(self) -> tuple[float, float]:
        """tanh-scaled distances inside objects, 0 on background."""
        return (0.0, 1.0)

    def distances(self, gt: np.ndarray) -> np.ndarray:
        """Inner distances (C, *spatial) in nm, clipped; 0 on background."""
        return np.stack(
            [
                inner_distance(labels, self.voxel_size, self.clip_distance)
                for labels in self.class_instances(gt)
            ]
        )

    def parameter_grid(self) -> list[Params]:
        """One parameter set per seed distance (nm) and minimum size (voxels)."""
        return self.instance_grid()

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Instances (C, *spatial) uint64 by seeded watershed on each channel, size-filtered."""
        return self.filter_sizes(self.segment(prediction, params), params)

    def post_process_grid(self, prediction: np.ndarray) -> Iterator[tuple[Params, np.ndarray]]:
        """Every parameter set with its instances, one watershed per seed distance."""
        return self.instance_grid_outputs(prediction)
