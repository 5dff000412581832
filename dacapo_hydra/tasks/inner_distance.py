"""Distance from inside each object to its boundary, for instance seeds (InnerDistanceTask)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

import numpy as np

from dacapo_hydra.evaluation.instance import INSTANCE_SCORE_DIRECTIONS, instance_scores
from dacapo_hydra.evaluation.per_class import class_score_directions, merge_class_scores
from dacapo_hydra.tasks.base import Params
from dacapo_hydra.tasks.distances import ScaledDistanceOptions, ScaledDistanceTask, inner_distance
from dacapo_hydra.tasks.post_processing import seeded_watershed


class InnerDistanceTask(ScaledDistanceTask):
    """Learn `tanh(d / scale_factor)`, d the distance (nm) from an object voxel to its boundary.

    Every object (instance) of a class has its own boundary, so touching objects are
    told apart; background is 0. Post-processing seeds instances where the predicted
    distance exceeds a seed distance (swept over a grid, nm) and grows them by
    watershed over the predicted foreground; the output is instance labels
    (C, *spatial) uint64, scored with the instance metrics per class.

    Args:
        seed_distances: nm; the seed distances swept. None: 1, 1.5, 2, 3 and 4 times
            the smallest voxel size.
        foreground_distance: nm; predicted distances above it are foreground. None: a
            quarter of the smallest voxel (object voxels are at least half a voxel in).
        criterion: score that picks the best iteration and seed distance.
        **options: `channels`, `class_ids` (the ground truth must hold instance ids),
            `scale_factor`, `clip_distance`, `tol_distance`, `mask_distances`,
            `clip_min` and `clip_max`, as
            :class:`~dacapo_hydra.tasks.distances.ScaledDistanceTask` takes them.

    """

    criterion = "voi"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        *,
        seed_distances: Sequence[float] | None = None,
        foreground_distance: float | None = None,
        criterion: str | None = None,
        **options: Unpack[ScaledDistanceOptions],
    ) -> None:
        super().__init__(dims, voxel_size, **options)
        self.seed_distances = self.voxel_grid(seed_distances, (1, 1.5, 2, 3, 4))
        self.foreground_distance = (
            0.25 * min(self.voxel_size)
            if foreground_distance is None
            else float(foreground_distance)
        )
        if criterion is not None:
            self.criterion = criterion
        self.check_criterion()

    def instances(self, gt: np.ndarray) -> np.ndarray:
        """(C, *spatial): the ground-truth instances of each class, 0 elsewhere."""
        return np.stack([np.where(m, gt, 0) for m in self.classes.masks(gt)])

    def distances(self, gt: np.ndarray) -> np.ndarray:
        """Inner distances (C, *spatial) in nm, clipped; 0 on background."""
        return np.stack(
            [
                inner_distance(labels, self.voxel_size, self.clip_distance)
                for labels in self.instances(gt)
            ]
        )

    def parameter_grid(self) -> list[Params]:
        """One parameter set per seed distance (nm)."""
        return [{"seed_distance": s} for s in self.seed_distances]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Instances (C, *spatial) uint64 by seeded watershed on each channel."""
        seed = float(self.scale(float(params["seed_distance"])))
        foreground = float(self.scale(self.foreground_distance))
        return np.stack([seeded_watershed(p, seed, foreground) for p in prediction])

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Instance scores per class, and their mean under the plain score names."""
        truth = self.instances(gt)
        return merge_class_scores(
            {
                name: instance_scores(output[c], truth[c], mask)
                for c, name in enumerate(self.classes.names)
            }
        )

    def score_directions(self) -> dict[str, bool]:
        """Instance score directions, per class when there are several."""
        return class_score_directions(self.classes.names, INSTANCE_SCORE_DIRECTIONS)
