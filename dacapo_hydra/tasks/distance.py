"""Signed distance to object boundaries, tanh-scaled (DaCapo's DistanceTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from dacapo_hydra.tasks.base import Task, balance_weights


class DistanceTask(Task):
    """Learn `tanh(d / scale_factor)`, d the signed distance (nm) to the foreground boundary.

    Inside objects d > 0, outside d < 0, clipped to ±`clip_distance`. With
    `mask_distances`, a voxel weighs 0 where its distance can't be known from the
    crop: where the nearest unknown voxel (outside the crop or unannotated) is
    closer than |d| - `tol_distance`, a boundary there could make d smaller.

    Args:
        scale_factor: nm; the tanh's scale.
        clip_distance: nm; distances are clipped to this.
        tol_distance: nm of slack when deciding whether a distance is known.
        mask_distances: whether to weigh unknowable distances 0.
        clip_min: lower clip of the foreground frequency for class balancing.
        clip_max: upper clip of the foreground frequency.

    """

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        scale_factor: float = 50.0,
        clip_distance: float = 100.0,
        tol_distance: float = 40.0,
        mask_distances: bool = True,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
    ) -> None:
        super().__init__(dims, voxel_size)
        if scale_factor <= 0 or clip_distance <= 0:
            raise ValueError(
                f"task: scale_factor ({scale_factor}) and clip_distance ({clip_distance}) "
                "must be positive"
            )
        if not 0 < clip_min <= clip_max < 1:
            raise ValueError(f"task: need 0 < clip_min <= clip_max < 1, got {clip_min}, {clip_max}")
        self.scale_factor = scale_factor
        self.clip_distance = clip_distance
        self.tol_distance = tol_distance
        self.mask_distances = mask_distances
        self.clip_min = clip_min
        self.clip_max = clip_max

    @property
    def num_channels(self) -> int:
        """One channel: the foreground (all non-zero labels)."""
        return 1

    def signed_distance(self, foreground: np.ndarray) -> np.ndarray:
        """Signed distance in nm (positive inside), clipped to ±clip_distance."""
        if foreground.all():
            return np.full(foreground.shape, self.clip_distance, np.float32)
        if not foreground.any():
            return np.full(foreground.shape, -self.clip_distance, np.float32)
        inside = distance_transform_edt(foreground, sampling=self.voxel_size)
        outside = distance_transform_edt(~foreground, sampling=self.voxel_size)
        # Voxel centres sit half a voxel from the boundary between them.
        d = np.where(foreground, inside, -outside) - np.where(foreground, 0.5, -0.5) * min(
            self.voxel_size
        )
        return np.clip(d, -self.clip_distance, self.clip_distance).astype(np.float32)

    def known(self, mask: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Where |distance| can be trusted given the crop's edges and unannotated voxels."""
        padded = np.pad(mask.astype(bool), 1, constant_values=False)
        to_unknown = distance_transform_edt(padded, sampling=self.voxel_size)
        to_unknown = to_unknown[(slice(1, -1),) * mask.ndim]
        # Clipped distances are known once the unknown is at least clip_distance away.
        return (np.abs(distance) <= to_unknown + self.tol_distance) & mask.astype(bool)

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target `tanh(d / scale)` and class-balanced, certainty-masked weights."""
        foreground = gt > 0
        distance = self.signed_distance(foreground)
        target = np.tanh(distance / self.scale_factor)[None].astype(np.float32)
        weight_mask = self.known(mask, distance) if self.mask_distances else mask.astype(bool)
        weight = balance_weights(foreground[None], weight_mask[None], self.clip_min, self.clip_max)
        return target, weight

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted mean squared error."""
        return (weight * (prediction - target) ** 2).mean()
