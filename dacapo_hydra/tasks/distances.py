"""Distances to object boundaries in world units, and where a crop lets them be known.

Also :class:`ScaledDistanceTask`, the settings and targets shared by the tasks that
learn `tanh(d / scale_factor)` per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, find_objects

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.tasks.base import ClassBalancer, Task
from dacapo_hydra.tasks.classes import ClassMap

# Without a measured object size, the scale follows the voxel: 6 voxels (48 nm at 8 nm).
FALLBACK_SCALE_VOXELS = 6.0


def signed_distance(
    foreground: np.ndarray, voxel_size: Sequence[float], clip_distance: float
) -> np.ndarray:
    """Signed distance (nm) to the foreground's boundary: positive inside, negative outside.

    Voxel centres sit half a (smallest) voxel from the boundary between two voxels,
    so voxels on either side of a boundary get ±half a voxel. Clipped to
    ±`clip_distance`; an all-foreground (all-background) crop is +(−)clip_distance.
    """
    foreground = foreground.astype(bool)
    if foreground.all():
        return np.full(foreground.shape, clip_distance, np.float32)
    if not foreground.any():
        return np.full(foreground.shape, -clip_distance, np.float32)
    inside = distance_transform_edt(foreground, sampling=voxel_size)
    outside = distance_transform_edt(~foreground, sampling=voxel_size)
    half = 0.5 * min(voxel_size)
    d = np.where(foreground, inside - half, half - outside)
    return np.clip(d, -clip_distance, clip_distance).astype(np.float32)


def inner_distance(
    labels: np.ndarray, voxel_size: Sequence[float], clip_distance: float
) -> np.ndarray:
    """Distance (nm) from each object voxel to the nearest voxel of another label.

    Touching objects each get their own boundary. Background is 0; object voxels
    are at least half a voxel. The crop's edge is not a boundary (whether it is
    one is unknown: see `known_distance`). Clipped to `clip_distance`.
    """
    ids, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    if ids[0] == 0:
        background = 0
    else:
        background = -1
        compact += 1
    out = np.zeros(labels.shape, np.float32)
    half = 0.5 * min(voxel_size)
    for index, box in enumerate(find_objects(compact), start=1):
        if box is None or index == background:
            continue
        # One object at a time in its bounding box grown by a voxel (inside the crop).
        grown = tuple(
            slice(max(0, s.start - 1), min(n, s.stop + 1))
            for s, n in zip(box, labels.shape, strict=True)
        )
        inside = compact[grown] == index
        if inside.all():
            d = np.full(inside.shape, clip_distance, np.float32)
        else:
            d = distance_transform_edt(inside, sampling=voxel_size) - half
        out[grown][inside] = np.minimum(d[inside], clip_distance)
    return out


def distance_to_unknown(mask: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Distance (nm) from each voxel to the nearest unannotated voxel or the crop's outside."""
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    return distance_transform_edt(padded, sampling=voxel_size)[(slice(1, -1),) * mask.ndim]


def known_distance(
    mask: np.ndarray, distance: np.ndarray, voxel_size: Sequence[float], tol_distance: float
) -> np.ndarray:
    """Where a distance computed in the crop can be trusted.

    A boundary hidden in the unknown (outside the crop or unannotated) could make
    |d| smaller only if the unknown is closer than |d|; `tol_distance` nm of slack
    is allowed. Clipped distances are known once the unknown is at least the clip
    away. Unannotated voxels are never known.

    Args:
        mask: (*spatial) 1 where annotated.
        distance: (C, *spatial) or (*spatial) distances (nm).
        voxel_size: nm per voxel.
        tol_distance: nm of slack.

    """
    to_unknown = distance_to_unknown(mask, voxel_size)
    return (np.abs(distance) <= to_unknown + tol_distance) & mask.astype(bool)


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
