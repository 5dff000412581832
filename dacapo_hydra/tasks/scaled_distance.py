"""The base of the tasks that learn `tanh(d / scale_factor)` per class (ScaledDistanceTask).

`distance`, `hot_distance` and `inner_distance` share its settings (scale, clip,
tolerance, classes, balancing), its targets and its loss; the distance maths is
:mod:`~dacapo_hydra.tasks.distances`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.tasks.balance import ClassBalancer
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.tasks.classes import ClassMap
from dacapo_hydra.tasks.distances import known_distance, signed_distance

# Without a measured object size, the scale follows the voxel: 6 voxels (48 nm at 8 nm).
FALLBACK_SCALE_VOXELS = 6.0


class ScaledDistanceOptions(TypedDict, total=False):
    """The keyword arguments of :class:`ScaledDistanceTask`, passed on by its subclasses."""

    channels: Sequence[str]
    class_ids: Sequence[Sequence[int]] | None
    scale_factor: Length | None
    clip_distance: Length | None
    tol_distance: Length | None
    mask_distances: bool
    clip_min: float
    clip_max: float
    object_radius: float | None


class ScaledDistanceTask(Task):
    """Base of the tasks that learn `tanh(d / scale_factor)` per class, d a distance in nm.

    Validates and stores the distance settings, maps classes to channels (one per
    class) and balances each channel's classes (inside, d > 0, against the rest) with
    `balancer`. The target is `scale(distances(gt))` with weights 0 where the distance
    can't be known from the crop (with `mask_distances`, see :func:`known_distance`);
    the loss is the weighted mean squared error. `distances` is the signed distance
    to each class's boundary unless a subclass says otherwise. Subclasses take these
    settings as keyword arguments (:class:`ScaledDistanceOptions`) and pass them on.

    Lengths are nm or strings with a unit (`"6vx"`, `"1.5um"`, see
    :mod:`dacapo_hydra.config.units`). Left unset they follow the data: the scale is
    the typical object's inscribed radius measured on the training labels (so the
    target still varies at the centre of a typical object, at 4 nm as at 250 nm),
    or 6 voxels without a measurement; the clip is twice the scale and the
    tolerance 0.8 times it (DaCapo's 50/100/40 nm at 8 nm).

    Args:
        dims: spatial dimensions of the data.
        voxel_size: ground-truth voxel size in nm (z, y, x).
        channels: one name per class (output channel).
        class_ids: per class, its label ids (see :class:`~dacapo_hydra.tasks.classes.ClassMap`).
        scale_factor: the tanh's scale; at least a voxel.
        clip_distance: distances are clipped to this; at least a voxel.
        tol_distance: slack when deciding whether a distance is known.
        mask_distances: whether to weigh unknowable distances 0.
        clip_min: lower clip of the foreground frequency for class balancing.
        clip_max: upper clip of the foreground frequency.
        object_radius: nm, the typical object's inscribed radius (see :class:`Task`).

    """

    def __init__(
        self,
        dims: int,
        voxel_size: Sequence[float],
        channels: Sequence[str] = ("foreground",),
        class_ids: Sequence[Sequence[int]] | None = None,
        scale_factor: Length | None = None,
        clip_distance: Length | None = None,
        tol_distance: Length | None = None,
        mask_distances: bool = True,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
        object_radius: float | None = None,
    ) -> None:
        super().__init__(dims, voxel_size, object_radius)
        vs = self.voxel_size
        derived = self.object_radius or FALLBACK_SCALE_VOXELS * min(vs)
        self.scale_factor = (
            max(derived, min(vs))
            if scale_factor is None
            else to_nm(scale_factor, vs, "task.scale_factor", min_voxels=1)
        )
        self.clip_distance = (
            2 * self.scale_factor
            if clip_distance is None
            else to_nm(clip_distance, vs, "task.clip_distance", min_voxels=1)
        )
        self.tol_distance = (
            0.8 * self.scale_factor
            if tol_distance is None
            else to_nm(tol_distance, vs, "task.tol_distance", min_voxels=0)
        )
        self.classes = ClassMap(channels, class_ids)
        self.mask_distances = mask_distances
        self.balancer = ClassBalancer(len(self.classes), 2, clip_min, clip_max)

    @property
    def num_channels(self) -> int:
        """One channel per class."""
        return len(self.classes)

    @property
    def channel_names(self) -> list[str]:
        """`distance <class>` per channel."""
        return [f"distance {name}" for name in self.classes.names]

    @property
    def output_range(self) -> tuple[float, float]:
        """tanh-scaled distances: -1 outside, 1 deep inside."""
        return (-1.0, 1.0)

    def check_crop(self, extent: Sequence[float]) -> None:
        """The tanh scale must fit the output crop: a larger one leaves a flat target."""
        if self.scale_factor > max(extent):
            raise ValueError(
                f"task.scale_factor: {self.scale_factor:g} nm is more than the training "
                f"crop's {max(extent):g} nm (output shape x voxel size); give a smaller "
                "length (e.g. '6vx') or a larger architecture.input_shape"
            )

    def voxel_grid(self, values: Sequence[float] | None, factors: Sequence[float]) -> list[float]:
        """`values` as floats; None (or empty): `factors` times the smallest voxel size."""
        step = min(self.voxel_size)
        return [float(v) for v in (values or [f * step for f in factors])]

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

    def unscale(self, target: np.ndarray) -> np.ndarray:
        """Target units back to nm (float32): `scale_factor * artanh(t)`, |t| clipped below 1."""
        clipped = np.clip(target, -0.999999, 0.999999)
        return (self.scale_factor * np.arctanh(clipped)).astype(np.float32)

    def known(self, mask: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Where `distance` (C, *spatial) may be trained on: known, or just annotated."""
        if self.mask_distances:
            return known_distance(mask, distance, self.voxel_size, self.tol_distance)
        return mask.astype(bool)

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target `tanh(d / scale)` and class-balanced, certainty-masked weights."""
        distance = self.distances(gt)
        target = self.scale(distance).astype(np.float32)
        return target, self.balancer(distance > 0, self.known(mask, distance))

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted mean squared error."""
        return (weight * (prediction - target) ** 2).mean()
