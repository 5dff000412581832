"""One class per voxel by softmax cross-entropy (DaCapo's OneHotTask)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.tasks.balance import ClassBalancer
from dacapo_hydra.tasks.base import Params, Task
from dacapo_hydra.tasks.binary import BinaryEvaluation
from dacapo_hydra.tasks.classes import ClassMap


class OneHotTask(BinaryEvaluation, Task):
    """Learn each voxel's class among named classes; the first is the background.

    The target is one channel of class indices (int64): 0 for background (label 0
    and any label no class claims), i for `classes[i]`. Weights are class-balanced
    over all classes (clipped frequencies) and 0 outside the mask. The loss is
    softmax cross-entropy; inference applies a softmax. Post-processing is argmax
    (output: class indices (*spatial) int64), scored with the binary metrics of each
    foreground class.

    Args:
        classes: class names, background first.
        class_ids: per foreground class (classes[1:]), its label ids (see
            :class:`~dacapo_hydra.tasks.classes.ClassMap`).
        clip_min: lower clip of a class frequency for class balancing.
        clip_max: upper clip.
        tol_distance: tolerance of the `*_with_tolerance` scores (nm, or e.g. "5vx").
        clip_distance: clip of the `*_clipped` distance scores (nm, or e.g. "12.5vx").
        object_radius: nm, measured on the training labels (unused).
        criterion: score that picks the best iteration.

    """

    criterion = "dice"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        classes: Sequence[str] = ("background", "foreground"),
        class_ids: Sequence[Sequence[int]] | None = None,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
        tol_distance: Length = "5vx",
        clip_distance: Length = "12.5vx",
        criterion: str | None = None,
        object_radius: float | None = None,
    ) -> None:
        super().__init__(dims, voxel_size, object_radius)
        if len(classes) < 2:
            raise ValueError(
                f"task.classes: need a background and at least one class, got {list(classes)}"
            )
        self.background = str(classes[0])
        self.classes = ClassMap(classes[1:], class_ids)
        self.balancer = ClassBalancer(1, len(classes), clip_min, clip_max)
        self.tol_distance = to_nm(tol_distance, self.voxel_size, "task.tol_distance", min_voxels=0)
        self.clip_distance = to_nm(
            clip_distance, self.voxel_size, "task.clip_distance", min_voxels=1
        )
        self.set_criterion(criterion)

    @property
    def num_channels(self) -> int:
        """One channel per class, background included."""
        return len(self.classes) + 1

    @property
    def channel_names(self) -> list[str]:
        """The class names, background first (softmax probabilities)."""
        return [self.background, *self.classes.names]

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class indices (1, *spatial) int64 and class-balanced weights (1, *spatial)."""
        indices = self.classes.indices(gt)[None]
        return indices, self.balancer(indices, mask.astype(bool)[None])

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted softmax cross-entropy over the class channels."""
        per_voxel = F.cross_entropy(prediction, target[:, 0].long(), reduction="none")
        return (per_voxel * weight[:, 0]).mean()

    def activation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Softmax over the class channels."""
        return torch.softmax(prediction, dim=1)

    def parameter_grid(self) -> list[Params]:
        """A single set: argmax has no parameter."""
        return [{"method": "argmax"}]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Class indices (*spatial) int64: the most probable class."""
        return np.argmax(prediction, axis=0).astype(np.int64)

    def binary_masks(
        self, output: np.ndarray, gt: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Predicted and true mask of each foreground class from class indices."""
        truth = self.classes.indices(gt)
        for i in range(1, len(self.classes) + 1):
            yield output == i, truth == i
