"""Distance from inside each object to its boundary, for instance seeds (InnerDistanceTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dacapo_hydra.evaluation.instance import INSTANCE_SCORE_DIRECTIONS, instance_scores
from dacapo_hydra.evaluation.per_class import class_score_directions, merge_class_scores
from dacapo_hydra.tasks.base import ClassBalancer, Params, Task
from dacapo_hydra.tasks.classes import ClassMap
from dacapo_hydra.tasks.distances import inner_distance, known_distance
from dacapo_hydra.tasks.post_processing import seeded_watershed


class InnerDistanceTask(Task):
    """Learn `tanh(d / scale_factor)`, d the distance (nm) from an object voxel to its boundary.

    Every object (instance) of a class has its own boundary, so touching objects are
    told apart; background is 0. Post-processing seeds instances where the predicted
    distance exceeds a seed distance (swept over a grid, nm) and grows them by
    watershed over the predicted foreground; the output is instance labels
    (C, *spatial) uint64, scored with the instance metrics per class.

    Args:
        channels: one name per class (output channel).
        class_ids: per class, its label ids (see :class:`~dacapo_hydra.tasks.classes.ClassMap`);
            the ground truth must hold instance ids.
        scale_factor: nm; the tanh's scale.
        clip_distance: nm; distances are clipped to this.
        tol_distance: nm of slack when deciding whether a distance is known.
        mask_distances: whether to weigh unknowable distances 0.
        clip_min: lower clip of the foreground frequency for class balancing.
        clip_max: upper clip of the foreground frequency.
        seed_distances: nm; the seed distances swept. None: 1, 1.5, 2, 3 and 4 times
            the smallest voxel size.
        foreground_distance: nm; predicted distances above it are foreground. None: a
            quarter of the smallest voxel (object voxels are at least half a voxel in).
        criterion: score that picks the best iteration and seed distance.

    """

    criterion = "voi"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        channels: Sequence[str] = ("foreground",),
        class_ids: Sequence[Sequence[int]] | None = None,
        scale_factor: float = 50.0,
        clip_distance: float = 100.0,
        tol_distance: float = 40.0,
        mask_distances: bool = True,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
        seed_distances: Sequence[float] | None = None,
        foreground_distance: float | None = None,
        criterion: str | None = None,
    ) -> None:
        super().__init__(dims, voxel_size)
        if scale_factor <= 0 or clip_distance <= 0 or tol_distance < 0:
            raise ValueError(
                f"task: scale_factor ({scale_factor}) and clip_distance ({clip_distance}) "
                f"must be positive, tol_distance ({tol_distance}) not negative"
            )
        self.classes = ClassMap(channels, class_ids)
        self.scale_factor = scale_factor
        self.clip_distance = clip_distance
        self.tol_distance = tol_distance
        self.mask_distances = mask_distances
        self.balancer = ClassBalancer(len(self.classes), 2, clip_min, clip_max)
        step = min(self.voxel_size)
        self.seed_distances = [
            float(s) for s in (seed_distances or [f * step for f in (1, 1.5, 2, 3, 4)])
        ]
        self.foreground_distance = (
            0.25 * step if foreground_distance is None else float(foreground_distance)
        )
        if criterion is not None:
            self.criterion = criterion
        self.check_criterion()

    @property
    def num_channels(self) -> int:
        """One channel per class."""
        return len(self.classes)

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

    def scale(self, distance: np.ndarray | float) -> np.ndarray:
        """A distance (nm) in target units: `tanh(d / scale_factor)`."""
        return np.tanh(np.asarray(distance, np.float64) / self.scale_factor)

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target `tanh(d / scale)` and class-balanced, certainty-masked weights."""
        distance = self.distances(gt)
        target = self.scale(distance).astype(np.float32)
        if self.mask_distances:
            known = known_distance(mask, distance, self.voxel_size, self.tol_distance)
        else:
            known = mask.astype(bool)
        return target, self.balancer(distance > 0, known)

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted mean squared error."""
        return (weight * (prediction - target) ** 2).mean()

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
