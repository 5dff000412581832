"""Signed distance to class boundaries, tanh-scaled (DaCapo's DistanceTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dacapo_hydra.evaluation.binary import BINARY_SCORE_DIRECTIONS, binary_scores
from dacapo_hydra.evaluation.per_class import class_score_directions, merge_class_scores
from dacapo_hydra.tasks.base import ClassBalancer, Params, Task
from dacapo_hydra.tasks.classes import ClassMap
from dacapo_hydra.tasks.distances import known_distance, signed_distance


class DistanceTask(Task):
    """Learn `tanh(d / scale_factor)` per class, d the signed distance (nm) to its boundary.

    Inside a class d > 0, outside d < 0, clipped to ±`clip_distance`. With
    `mask_distances`, a voxel weighs 0 where its distance can't be known from the
    crop (see :func:`~dacapo_hydra.tasks.distances.known_distance`). Weights are
    class-balanced per channel. Post-processing thresholds the predicted distance
    (a grid of thresholds in nm); the output is binary masks (C, *spatial), scored
    with the binary metrics per class.

    Args:
        channels: one name per class (output channel).
        class_ids: per class, its label ids (see :class:`~dacapo_hydra.tasks.classes.ClassMap`).
        scale_factor: nm; the tanh's scale.
        clip_distance: nm; distances are clipped to this.
        tol_distance: nm of slack when deciding whether a distance is known; also the
            tolerance of the `*_with_tolerance` scores.
        mask_distances: whether to weigh unknowable distances 0.
        clip_min: lower clip of the foreground frequency for class balancing.
        clip_max: upper clip of the foreground frequency.
        thresholds: nm; the distances swept as foreground thresholds. None: -1, -0.5,
            0, 0.5 and 1 times the smallest voxel size.
        criterion: score that picks the best iteration and threshold.

    """

    criterion = "dice"

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
        thresholds: Sequence[float] | None = None,
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
        self.thresholds = [
            float(t) for t in (thresholds or [f * step for f in (-1, -0.5, 0, 0.5, 1)])
        ]
        if criterion is not None:
            self.criterion = criterion
        self.check_criterion()

    @property
    def num_channels(self) -> int:
        """One channel per class."""
        return len(self.classes)

    def distances(self, gt: np.ndarray) -> np.ndarray:
        """Signed distances (C, *spatial) in nm, clipped."""
        return np.stack(
            [
                signed_distance(m, self.voxel_size, self.clip_distance)
                for m in self.classes.masks(gt)
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
        """One parameter set per threshold (nm)."""
        return [{"threshold": t} for t in self.thresholds]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Binary masks (C, *spatial) uint8: predicted distance above `threshold` nm."""
        return (prediction > self.scale(float(params["threshold"]))).astype(np.uint8)

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Binary scores per class, and their mean under the plain score names."""
        truth = self.classes.masks(gt)
        return merge_class_scores(
            {
                name: binary_scores(
                    output[c],
                    truth[c],
                    mask,
                    self.voxel_size,
                    tol_distance=self.tol_distance,
                    clip_distance=self.clip_distance,
                )
                for c, name in enumerate(self.classes.names)
            }
        )

    def score_directions(self) -> dict[str, bool]:
        """Binary score directions, per class when there are several."""
        return class_score_directions(self.classes.names, BINARY_SCORE_DIRECTIONS)
