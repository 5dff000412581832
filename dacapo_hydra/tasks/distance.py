"""Signed distance to class boundaries, tanh-scaled (DaCapo's DistanceTask)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

import numpy as np

from dacapo_hydra.tasks.base import Params
from dacapo_hydra.tasks.binary import BinaryEvaluation
from dacapo_hydra.tasks.distances import ScaledDistanceOptions, ScaledDistanceTask


class DistanceTask(BinaryEvaluation, ScaledDistanceTask):
    """Learn `tanh(d / scale_factor)` per class, d the signed distance (nm) to its boundary.

    Inside a class d > 0, outside d < 0, clipped to ±`clip_distance`. With
    `mask_distances`, a voxel weighs 0 where its distance can't be known from the
    crop (see :func:`~dacapo_hydra.tasks.distances.known_distance`). Weights are
    class-balanced per channel. Post-processing thresholds the predicted distance
    (a grid of thresholds in nm); the output is binary masks (C, *spatial), scored
    with the binary metrics per class.

    Args:
        thresholds: nm; the distances swept as foreground thresholds. None: -1, -0.5,
            0, 0.5 and 1 times the smallest voxel size.
        criterion: score that picks the best iteration and threshold.
        **options: `channels`, `class_ids`, `scale_factor`, `clip_distance`,
            `tol_distance` (also the tolerance of the `*_with_tolerance` scores),
            `mask_distances`, `clip_min` and `clip_max`, as
            :class:`~dacapo_hydra.tasks.distances.ScaledDistanceTask` takes them.

    """

    criterion = "dice"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        *,
        thresholds: Sequence[float] | None = None,
        criterion: str | None = None,
        **options: Unpack[ScaledDistanceOptions],
    ) -> None:
        super().__init__(dims, voxel_size, **options)
        self.thresholds = self.voxel_grid(thresholds, (-1, -0.5, 0, 0.5, 1))
        if criterion is not None:
            self.criterion = criterion
        self.check_criterion()

    def parameter_grid(self) -> list[Params]:
        """One parameter set per threshold (nm)."""
        return [{"threshold": t} for t in self.thresholds]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Binary masks (C, *spatial) uint8: predicted distance above `threshold` nm."""
        return (prediction > self.scale(float(params["threshold"]))).astype(np.uint8)
