"""Binary scores per class, shared by the tasks whose output is one mask per class."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dacapo_hydra.evaluation.binary import BINARY_SCORE_DIRECTIONS, binary_scores
from dacapo_hydra.evaluation.per_class import class_score_directions, merge_class_scores
from dacapo_hydra.tasks.classes import ClassMap


class BinaryEvaluation:
    """Mixin for a :class:`~dacapo_hydra.tasks.base.Task`: binary scores of each class.

    Implements `evaluate` and `score_directions`. The task sets `classes`,
    `voxel_size`, `tol_distance` (tolerance of the `*_with_tolerance` scores) and
    `clip_distance` (clip of the `*_clipped` distance scores); `binary_masks` says
    how a post-processed output and the ground truth become a mask per class.
    List it before the task's base class, so that its methods take precedence.
    """

    classes: ClassMap
    voxel_size: tuple[float, ...]
    tol_distance: float
    clip_distance: float

    def binary_masks(
        self, output: np.ndarray, gt: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Predicted and true mask of each class in turn, in the order of `classes.names`.

        By default `output` is binary masks (C, *spatial), one per class.
        """
        truth = self.classes.masks(gt)
        for c in range(len(self.classes)):
            yield output[c], truth[c]

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Binary scores per class, and their mean under the plain score names."""
        return merge_class_scores(
            {
                name: binary_scores(
                    p,
                    t,
                    mask,
                    self.voxel_size,
                    tol_distance=self.tol_distance,
                    clip_distance=self.clip_distance,
                )
                for name, (p, t) in zip(
                    self.classes.names, self.binary_masks(output, gt), strict=True
                )
            }
        )

    def score_directions(self) -> dict[str, bool]:
        """Binary score directions, per class when there are several."""
        return class_score_directions(self.classes.names, BINARY_SCORE_DIRECTIONS)
