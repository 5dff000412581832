"""Elastic deformation and rotation on a coarse control-point grid, in world units.

A :class:`Warp` maps each voxel centre of an output crop to the world point it
is read from: `q = c + R (p - c) + D(p)`, with `c` the crop's centre, `R` a
random rotation and `D` a displacement drawn at control points `control_point_spacing`
nm apart and interpolated linearly in between (what gunpowder's ElasticAugment
means by control points). The sampler reads only the bounding box of those
points (plus one voxel) and resamples it, so only the region a crop needs is
deformed: never the whole volume, and no padding shows inside the crop.

Hand-written rather than MONAI's `Rand3DElasticd` (a dense smoothed field: 2.2 s
per 132³ crop) or `RandDeformGrid` + `Resample` (which deform an array already
in memory, not a world region still on disk); the interpolation itself is
PyTorch's `grid_sample`, as MONAI's `Resample` uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from dacapo_hydra.data.roi import Roi

ROTATION_PLANES = ("yx", "all")


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run PyTorch's CPU ops on one thread inside the block, then restore the count.

    The per-crop interpolations are a few milliseconds each: on a busy machine,
    synchronising several threads costs more than it saves (measured: 0.6 s per
    132³ crop with the default threads against 0.2 s with one). DataLoader
    workers run on one thread already; this makes the main process do the same
    while it samples (training and sampling never overlap there).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def voxel_centres(roi: Roi, voxel_size: Sequence[float]) -> list[np.ndarray]:
    """World coordinates of the voxel centres of `roi` along each axis."""
    out = []
    for b, s, v in zip(roi.begin, roi.shape, voxel_size, strict=True):
        n = int(round(s / v))
        out.append(np.arange(n) * v + b + v / 2)
    return out


def sample_grid(data: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Interpolate `data` (C, *n) at voxel coordinates `coords` (dims, *shape).

    Coordinates are in voxel units of `data` (0 = the first voxel's centre);
    beyond the edge the border value is repeated.
    """
    dims = coords.shape[0]
    grid = torch.stack(
        [2 * coords[d] / max(data.shape[1 + d] - 1, 1) - 1 for d in reversed(range(dims))], -1
    )  # grid_sample wants the last axis (x) first
    out = F.grid_sample(
        data[None], grid[None], mode=mode, padding_mode="border", align_corners=True
    )
    return out[0]


def _interpolation_matrix(positions: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation weights (len(positions), n) at fractional control indices."""
    positions = np.clip(positions, 0, n - 1)
    low = np.minimum(np.floor(positions).astype(int), n - 2)
    frac = positions - low
    w = np.zeros((len(positions), n), np.float32)
    rows = np.arange(len(positions))
    w[rows, low] = 1 - frac
    w[rows, low + 1] = frac
    return w


@dataclass
class Warp:
    """One random deformation of a crop: rotation about `centre`, then displacement.

    Attributes:
        centre: world centre of the crop (nm).
        matrix: rotation (dims x dims).
        grid_begin: world position of the first control point.
        grid_step: world distance between control points.
        field: displacement (nm) at the control points, (dims, *n), or None.

    """

    centre: np.ndarray
    matrix: np.ndarray
    grid_begin: np.ndarray
    grid_step: np.ndarray
    field: np.ndarray | None

    def source_points(self, roi: Roi, voxel_size: Sequence[float]) -> torch.Tensor:
        """Where the voxel centres of `roi` are read from: (dims, *shape) float32.

        World coordinates relative to :attr:`centre` (small numbers keep float32
        exact to far below a voxel).
        """
        axes = [x - c for x, c in zip(voxel_centres(roi, voxel_size), self.centre, strict=True)]
        dims = len(axes)
        shape = tuple(len(x) for x in axes)
        # The rotated lattice is a sum of one vector per axis, broadcast: no meshgrid.
        out = torch.zeros((dims, *shape), dtype=torch.float32)
        for d in range(dims):
            for e in range(dims):
                if self.matrix[d, e] != 0:
                    view = [1] * dims
                    view[e] = shape[e]
                    vec = torch.from_numpy((self.matrix[d, e] * axes[e]).astype(np.float32))
                    out[d] += vec.reshape(view)
        if self.field is not None:
            out += self.displacement(roi, voxel_size)
        return out

    def displacement(self, roi: Roi, voxel_size: Sequence[float]) -> torch.Tensor:
        """The control-point displacement at the voxel centres of `roi`, (dims, *shape).

        Linear interpolation is separable, so it is one small matrix product per
        axis (cheaper than interpolating every voxel with grid_sample).
        """
        assert self.field is not None
        field = torch.from_numpy(self.field)
        dims = field.shape[0]
        for axis, x in enumerate(voxel_centres(roi, voxel_size)):
            n = self.field.shape[1 + axis]
            w = _interpolation_matrix((x - self.grid_begin[axis]) / self.grid_step[axis], n)
            field = torch.movedim(
                torch.tensordot(torch.from_numpy(w), field, dims=([1], [1 + axis])), 0, 1 + axis
            )
        return field.reshape(dims, *field.shape[1:])

    def bounds(self, roi: Roi, voxel_size: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """World box holding every source point of `roi`.

        The rotated box's corners, grown by the largest control-point displacement
        (linear interpolation never exceeds it).
        """
        axes = voxel_centres(roi, voxel_size)
        corners = np.array(np.meshgrid(*[[x[0], x[-1]] for x in axes], indexing="ij"))
        corners = corners.reshape(len(axes), -1).T - self.centre
        rotated = corners @ self.matrix.T + self.centre
        reach = (
            np.abs(self.field).reshape(len(axes), -1).max(1)
            if self.field is not None
            else np.zeros(len(axes))
        )
        return rotated.min(0) - reach, rotated.max(0) + reach


class Deformation:
    """Draws random :class:`Warp` s: elastic displacement and rotation, each with a probability.

    Args:
        dims: spatial dimensions.
        control_point_spacing: nm between control points (per axis or one number).
        jitter_sigma: standard deviation (nm) of control point displacements, per axis.
        rotation_max: largest rotation angle, degrees (angles uniform in ±this).
        rotation_planes: `yx` (rotate in the y,x plane only, as for anisotropic EM)
            or `all` (every plane).
        elastic_prob: probability of an elastic displacement.
        rotation_prob: probability of a rotation.

    """

    def __init__(
        self,
        dims: int,
        control_point_spacing: float | Sequence[float] = 100.0,
        jitter_sigma: float | Sequence[float] = 10.0,
        rotation_max: float = 0.0,
        rotation_planes: str = "yx",
        elastic_prob: float = 0.5,
        rotation_prob: float = 0.5,
    ) -> None:
        self.dims = dims
        self.spacing = _per_axis(control_point_spacing, dims, "control_point_spacing")
        self.sigma = _per_axis(jitter_sigma, dims, "jitter_sigma", positive=False)
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"control_point_spacing must be positive, got {self.spacing}")
        if rotation_planes not in ROTATION_PLANES:
            raise ValueError(
                f"rotation_planes must be one of {ROTATION_PLANES}, got {rotation_planes!r}"
            )
        self.rotation_max = math.radians(rotation_max)
        self.planes = (
            [(dims - 2, dims - 1)]
            if rotation_planes == "yx"
            else list(combinations(range(dims), 2))
        )
        self.elastic_prob = elastic_prob if any(s > 0 for s in self.sigma) else 0.0
        self.rotation_prob = rotation_prob if rotation_max > 0 else 0.0

    @property
    def active(self) -> bool:
        """Whether any warp can be drawn at all."""
        return self.elastic_prob > 0 or self.rotation_prob > 0

    def sample(
        self, rng: np.random.Generator, roi: Roi, voxel_size: Sequence[float]
    ) -> Warp | None:
        """A random warp for a crop covering `roi` (the largest crop read), or None."""
        elastic = self.elastic_prob > 0 and rng.random() < self.elastic_prob
        rotate = self.rotation_prob > 0 and rng.random() < self.rotation_prob
        if not (elastic or rotate):
            return None
        matrix = np.eye(self.dims)
        if rotate:
            for a, b in self.planes:
                angle = rng.uniform(-self.rotation_max, self.rotation_max)
                r = np.eye(self.dims)
                r[a, a] = r[b, b] = math.cos(angle)
                r[a, b], r[b, a] = -math.sin(angle), math.sin(angle)
                matrix = r @ matrix
        first = np.asarray(roi.begin) + np.asarray(voxel_size) / 2
        extent = np.maximum(np.asarray(roi.shape) - np.asarray(voxel_size), 1e-6)
        n = np.maximum(2, np.ceil(extent / self.spacing).astype(int) + 1)
        field = None
        if elastic:
            noise = rng.normal(size=(self.dims, *n)) * np.reshape(
                self.sigma, (-1,) + (1,) * self.dims
            )
            field = noise.astype(np.float32)
        return Warp(
            centre=np.asarray(roi.center, float),
            matrix=matrix,
            grid_begin=first,
            grid_step=extent / (n - 1),
            field=field,
        )


def _per_axis(
    value: float | Sequence[float], dims: int, name: str, positive: bool = True
) -> tuple[float, ...]:
    values = (float(value),) * dims if isinstance(value, int | float) else tuple(map(float, value))
    if len(values) != dims:
        raise ValueError(f"{name} must be a number or a list of {dims} numbers, got {value!r}")
    if any(v < 0 for v in values) or (positive and any(v == 0 for v in values)):
        raise ValueError(
            f"{name} must be {'positive' if positive else 'non-negative'}, got {value!r}"
        )
    return values
