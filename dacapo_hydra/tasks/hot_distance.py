"""One-hot masks and signed distances learned together (DaCapo's HotDistanceTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.evaluation.binary import BINARY_SCORE_DIRECTIONS, binary_scores
from dacapo_hydra.evaluation.per_class import class_score_directions, merge_class_scores
from dacapo_hydra.tasks.base import ClassBalancer, Params, Task
from dacapo_hydra.tasks.classes import ClassMap
from dacapo_hydra.tasks.distances import known_distance, signed_distance


class HotDistanceTask(Task):
    """Learn, per class, a binary mask (first C channels) and `tanh(d / scale)` (last C).

    The mask channels train with weighted binary cross-entropy on logits (sigmoid at
    inference), the distance channels with weighted mean squared error, as
    :class:`~dacapo_hydra.tasks.distance.DistanceTask`; the loss is their sum. Both
    are class-balanced; distance weights are also 0 where a distance can't be known.
    Post-processing uses either head: `{"source": "hot", "threshold": p}` thresholds
    the mask probability, `{"source": "distance", "threshold": nm}` the distance;
    the output is binary masks (C, *spatial) uint8, scored per class.

    Args:
        channels: one name per class.
        class_ids: per class, its label ids (see :class:`~dacapo_hydra.tasks.classes.ClassMap`).
        scale_factor: nm; the tanh's scale.
        clip_distance: nm; distances are clipped to this.
        tol_distance: nm of slack when deciding whether a distance is known.
        mask_distances: whether to weigh unknowable distances 0.
        clip_min: lower clip of the foreground frequency for class balancing.
        clip_max: upper clip.
        hot_thresholds: probabilities swept on the mask head.
        thresholds: nm; distances swept on the distance head. None: -1, -0.5, 0, 0.5
            and 1 times the smallest voxel size.
        criterion: score that picks the best iteration and parameters.

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
        hot_thresholds: Sequence[float] = (0.5,),
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
        self.hot_balancer = ClassBalancer(len(self.classes), 2, clip_min, clip_max)
        self.distance_balancer = ClassBalancer(len(self.classes), 2, clip_min, clip_max)
        self.hot_thresholds = [float(p) for p in hot_thresholds]
        if not all(0 < p < 1 for p in self.hot_thresholds):
            raise ValueError(
                f"task.hot_thresholds: need values in (0, 1), got {self.hot_thresholds}"
            )
        step = min(self.voxel_size)
        self.thresholds = [
            float(t) for t in (thresholds or [f * step for f in (-1, -0.5, 0, 0.5, 1)])
        ]
        if criterion is not None:
            self.criterion = criterion
        self.check_criterion()

    @property
    def num_channels(self) -> int:
        """A mask and a distance channel per class."""
        return 2 * len(self.classes)

    def scale(self, distance: np.ndarray | float) -> np.ndarray:
        """A distance (nm) in target units: `tanh(d / scale_factor)`."""
        return np.tanh(np.asarray(distance, np.float64) / self.scale_factor)

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks then scaled distances (2C, *spatial) float32, and their weights."""
        masks = self.classes.masks(gt)
        distance = np.stack(
            [signed_distance(m, self.voxel_size, self.clip_distance) for m in masks]
        )
        annotated = mask.astype(bool)
        if self.mask_distances:
            known = known_distance(mask, distance, self.voxel_size, self.tol_distance)
        else:
            known = np.broadcast_to(annotated, distance.shape)
        target = np.concatenate([masks.astype(np.float32), self.scale(distance).astype(np.float32)])
        weight = np.concatenate(
            [self.hot_balancer(masks, annotated), self.distance_balancer(masks, known)]
        )
        return target, weight

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted BCE on the mask logits plus weighted MSE on the distances."""
        n = len(self.classes)
        hot = F.binary_cross_entropy_with_logits(prediction[:, :n], target[:, :n], weight[:, :n])
        distance = (weight[:, n:] * (prediction[:, n:] - target[:, n:]) ** 2).mean()
        return hot + distance

    def activation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Sigmoid on the mask channels; the distances as they are."""
        n = len(self.classes)
        return torch.cat([torch.sigmoid(prediction[:, :n]), prediction[:, n:]], dim=1)

    def parameter_grid(self) -> list[Params]:
        """Thresholds of the mask head, then of the distance head (nm)."""
        return [{"source": "hot", "threshold": p} for p in self.hot_thresholds] + [
            {"source": "distance", "threshold": t} for t in self.thresholds
        ]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Binary masks (C, *spatial) uint8 from the head `params["source"]` names."""
        n = len(self.classes)
        threshold = float(params["threshold"])
        if params["source"] == "hot":
            return (prediction[:n] > threshold).astype(np.uint8)
        if params["source"] == "distance":
            return (prediction[n:] > self.scale(threshold)).astype(np.uint8)
        raise KeyError(
            f"hot_distance: source must be 'hot' or 'distance', got {params['source']!r}"
        )

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
