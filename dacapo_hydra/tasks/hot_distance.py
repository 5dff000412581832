"""One-hot masks and signed distances learned together (DaCapo's HotDistanceTask)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Unpack

import numpy as np
import torch
import torch.nn.functional as F

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.tasks.balance import ClassBalancer
from dacapo_hydra.tasks.base import Params
from dacapo_hydra.tasks.binary import BinaryEvaluation
from dacapo_hydra.tasks.distance_instances import INSTANCE_CRITERION, DistanceInstances
from dacapo_hydra.tasks.scaled_distance import ScaledDistanceOptions, ScaledDistanceTask


class HotDistanceTask(DistanceInstances, BinaryEvaluation, ScaledDistanceTask):
    """Learn, per class, a binary mask (first C channels) and `tanh(d / scale)` (last C).

    The mask channels train with weighted binary cross-entropy on logits (sigmoid at
    inference), the distance channels with weighted mean squared error, as
    :class:`~dacapo_hydra.tasks.distance.DistanceTask`; the loss is their sum. Both
    are class-balanced; distance weights are also 0 where a distance can't be known.
    Post-processing uses either head: `{"source": "hot", "threshold": p}` thresholds
    the mask probability, `{"source": "distance", "threshold": nm}` the distance;
    the output is binary masks (C, *spatial) uint8, scored per class. With
    `instances: true` the distance head gives instances as
    :class:`~dacapo_hydra.tasks.distance.DistanceTask` does (h-maxima seeded
    watershed inside the predicted mask, then a size filter).

    Args:
        hot_thresholds: probabilities swept on the mask head.
        thresholds: distances swept on the distance head (nm or e.g. "1vx"). None:
            -1, -0.5, 0, 0.5 and 1 voxel.
        instances: whether post-processing gives instance labels.
        seed_h: instances: the h-maxima dynamics swept (see DistanceTask).
        min_sizes: instances: voxels; None: derived from the typical object's volume.
        criterion: score that picks the best iteration and parameters.
        **options: `channels`, `class_ids`, `scale_factor`, `clip_distance`,
            `tol_distance`, `mask_distances`, `clip_min` (for both heads) and
            `clip_max`, as :class:`~dacapo_hydra.tasks.scaled_distance.ScaledDistanceTask`
            takes them.

    """

    criterion = "dice"

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        *,
        hot_thresholds: Sequence[float] = (0.5,),
        thresholds: Sequence[Length] | None = None,
        instances: bool = False,
        seed_h: Sequence[Length] | None = None,
        min_sizes: Sequence[int] | None = None,
        criterion: str | None = None,
        **options: Unpack[ScaledDistanceOptions],
    ) -> None:
        super().__init__(dims, voxel_size, **options)
        # The base's `balancer` weighs the distances; the masks get one of their own.
        self.distance_balancer = self.balancer
        self.hot_balancer = ClassBalancer(
            len(self.classes), 2, self.balancer.clip_min, self.balancer.clip_max
        )
        self.hot_thresholds = [float(p) for p in hot_thresholds]
        if not all(0 < p < 1 for p in self.hot_thresholds):
            raise ValueError(
                f"task.hot_thresholds: need values in (0, 1), got {self.hot_thresholds}"
            )
        self.thresholds = [
            to_nm(t, self.voxel_size, "task.thresholds")
            for t in (thresholds or self.voxel_grid(None, (-1, -0.5, 0, 0.5, 1)))
        ]
        self.instances = bool(instances)
        self.init_instances(seed_h, (1, 2), min_sizes, None, 0.0)
        self.set_criterion(criterion, INSTANCE_CRITERION if self.instances else "dice")

    @property
    def num_channels(self) -> int:
        """A mask and a distance channel per class."""
        return 2 * len(self.classes)

    @property
    def channel_names(self) -> list[str]:
        """`mask <class>` per class, then `distance <class>`."""
        names = self.classes.names
        return [*(f"mask {n}" for n in names), *(f"distance {n}" for n in names)]

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks then scaled distances (2C, *spatial) float32, and their weights."""
        masks = self.classes.masks(gt)
        distance = self.distances(gt)
        target = np.concatenate([masks.astype(np.float32), self.scale(distance).astype(np.float32)])
        weight = np.concatenate(
            [
                self.hot_balancer(masks, mask.astype(bool)),
                self.distance_balancer(masks, self.known(mask, distance)),
            ]
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
        """Instances: h and size sets; else thresholds of the mask head, then the distance head."""
        if self.instances:
            return self.instance_grid()
        return [{"source": "hot", "threshold": p} for p in self.hot_thresholds] + [
            {"source": "distance", "threshold": t} for t in self.thresholds
        ]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Binary masks (C, *spatial) uint8 from the head `params["source"]` names."""
        n = len(self.classes)
        if self.instances:
            return self.filter_sizes(self.segment(prediction[n:], params), params)
        threshold = float(params["threshold"])
        if params["source"] == "hot":
            return (prediction[:n] > threshold).astype(np.uint8)
        if params["source"] == "distance":
            return (prediction[n:] > self.scale(threshold)).astype(np.uint8)
        raise KeyError(
            f"hot_distance: source must be 'hot' or 'distance', got {params['source']!r}"
        )

    def post_process_grid(self, prediction: np.ndarray) -> Iterator[tuple[Params, np.ndarray]]:
        """Every parameter set with its output (instances: one watershed per h)."""
        if self.instances:
            return self.instance_grid_outputs(prediction[len(self.classes) :])
        return super().post_process_grid(prediction)
