"""Elastic deformation and rotation on a coarse control-point grid, in world units.

A :class:`Warp` maps each voxel centre of an output crop to the world point it
is read from: `q = c + R (p - c) + D(p)`, with `c` the crop's centre, `R` a
random rotation and `D` a displacement drawn at control points `control_point_spacing`
nm apart (what gunpowder's ElasticAugment means by control points) and
interpolated in between: linearly, or with an interpolating cubic B-spline
(`cubic`, C² smooth, as gunpowder's cubic upscaling of its displacement field).
The sampler reads only the bounding box of those points (plus one voxel) and
resamples it, so only the region a crop needs is deformed: never the whole
volume, and no padding shows inside the crop.

Both interpolations are separable, so the displacement at every voxel is one
small matrix per axis (:func:`~dacapo_hydra.data.interpolation.axis_weights`);
:meth:`Warp.points` contracts them
with the control grid and adds the rotation, writing the result straight into
`grid_sample`'s layout (`(1, *shape, dims)`, last axis x first) with one matrix
product: no per-voxel stacking, no temporaries the size of the crop.

Hand-written rather than MONAI's `Rand3DElasticd` (a dense smoothed field over every
voxel: many times slower per crop, README "Benchmarks") or `RandDeformGrid` +
`Resample` (which deform an array already in memory, not a world region still on
disk); the interpolation itself is PyTorch's `grid_sample`, as MONAI's `Resample` uses.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from dacapo_hydra.data.interpolation import INTERPOLATIONS, axis_weights, spline
from dacapo_hydra.data.roi import Roi

ROTATION_PLANES = ("yx", "all")


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run PyTorch's CPU ops on one thread inside the block, then restore the count.

    The per-crop interpolations are a few milliseconds each: on a busy machine,
    synchronising several threads costs more than it saves (measured on 132³ crops,
    one thread was the faster: README, "Benchmarks"). DataLoader
    workers run on one thread already; this makes the main process do the same
    while it samples (training and sampling never overlap there).
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
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


@dataclass
class Warp:
    """One random deformation of a crop: rotation about `centre`, then displacement.

    Attributes:
        centre: world centre of the crop (nm).
        matrix: rotation (dims x dims).
        grid_begin: world position of the first control point.
        grid_step: world distance between control points.
        field: displacement (nm) at the control points, (dims, *n), or None.
        interpolation: how the displacement is interpolated between control
            points: `linear` or `cubic` (natural interpolating cubic spline).

    """

    centre: np.ndarray
    matrix: np.ndarray
    grid_begin: np.ndarray
    grid_step: np.ndarray
    field: np.ndarray | None
    interpolation: str = "linear"
    _plane: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )

    @property
    def dims(self) -> int:
        """Spatial dimensions."""
        return len(self.centre)

    def weights(self, roi: Roi, voxel_size: Sequence[float]) -> list[np.ndarray]:
        """Per axis, the control points' weights (shape[d], n_d) at the voxel centres of `roi`."""
        assert self.field is not None
        out = []
        for axis, (b, v) in enumerate(zip(roi.begin, voxel_size, strict=True)):
            count = int(round(roi.shape[axis] / v))
            start = (b + v / 2 - self.grid_begin[axis]) / self.grid_step[axis]
            out.append(
                axis_weights(
                    self.interpolation,
                    self.field.shape[1 + axis],
                    float(start),
                    float(v / self.grid_step[axis]),
                    count,
                )
            )
        return out

    def points(
        self,
        roi: Roi,
        voxel_size: Sequence[float],
        scale: Sequence[float],
        offset: Sequence[float],
    ) -> torch.Tensor:
        """Where the voxel centres of `roi` are read from, mapped per axis: (*shape, dims).

        The world point `q` (relative to :attr:`centre`) of each voxel, as
        `scale[d] * q[d] + offset[d]`, in `grid_sample`'s layout: the last axis
        holds x first. One matrix product along the first axis writes it: the
        rotation and the displacement (contracted along the other axes first,
        on the coarse grid) are its rows.

        Args:
            roi: the box whose voxel centres are mapped.
            voxel_size: its voxel size (nm).
            scale: per axis (z, y, x), the factor applied to `q`.
            offset: per axis, the term added.

        """
        dims = self.dims
        axes = [x - c for x, c in zip(voxel_centres(roi, voxel_size), self.centre, strict=True)]
        shape = tuple(len(x) for x in axes)
        flip = list(reversed(range(dims)))  # output channel k holds axis dims - 1 - k
        scale_k = np.asarray(scale, np.float64)[flip]
        matrix_k = np.asarray(self.matrix, np.float64)[flip] * scale_k[:, None]  # (k, axis)
        n0 = 0 if self.field is None else self.field.shape[1]
        # Rows of the product along axis 0: the displacement at each control plane, the
        # rotation's x_0 column, the rest of the rotation plus the offset.
        table = torch.empty((n0 + 2, *shape[1:], dims), dtype=torch.float32)
        first = np.empty((shape[0], n0 + 2), np.float32)
        if self.field is not None:
            first[:, :n0], plane = self.planes(roi, voxel_size)
            torch.mul(plane, torch.from_numpy(scale_k.astype(np.float32)), out=table[:n0])
        first[:, n0] = axes[0]
        first[:, n0 + 1] = 1
        table[n0] = torch.from_numpy(matrix_k[:, 0].astype(np.float32))
        constant = np.asarray(offset, np.float64)[flip]
        for axis in range(1, dims):
            view = [1] * dims
            view[axis - 1] = shape[axis]
            view[-1] = dims
            term = axes[axis][:, None] * matrix_k[:, axis]  # (shape[axis], k)
            constant = constant + term.reshape(view)
        table[n0 + 1] = torch.from_numpy(np.asarray(constant, np.float32))
        out = torch.from_numpy(first) @ table.view(n0 + 2, -1)
        return out.view(*shape, dims)

    def planes(self, roi: Roi, voxel_size: Sequence[float]) -> tuple[np.ndarray, torch.Tensor]:
        """The displacement (nm) at each control plane along axis 0, at `roi`'s other voxels.

        Returns axis 0's weights (shape[0], n_0) and the planes (n_0, *shape[1:], dims),
        last axis x first: the field contracted along every axis but the first. The
        latest `roi`'s are kept, as :meth:`bounds` and then :meth:`grid` ask for them.
        """
        assert self.field is not None
        key = (roi, tuple(voxel_size))
        if key not in self._plane:
            weights = self.weights(roi, voxel_size)
            plane = torch.from_numpy(np.ascontiguousarray(self.field[::-1]))  # (k, n_0, ...)
            for w in weights[1:]:  # contracted axis moves last: (k, n_0, shape_1, ...)
                plane = torch.tensordot(plane, torch.from_numpy(w), dims=([2], [1]))
            self._plane = {key: (weights[0], plane.movedim(0, -1))}
        return self._plane[key]

    def grid(
        self, roi: Roi, voxel_size: Sequence[float], region: Roi, region_voxel_size: Sequence[float]
    ) -> torch.Tensor:
        """`grid_sample`'s grid (1, *shape, dims) reading `roi`'s voxels from the box `region`.

        With `align_corners=True`: -1 and 1 are the first and last voxel centres
        of `region` on its grid (`region_voxel_size`).
        """
        scale, offset = [], []
        for c, b, s, v in zip(
            self.centre, region.begin, region.shape, region_voxel_size, strict=True
        ):
            a = 2 / (v * max(int(round(s / v)) - 1, 1))
            scale.append(a)
            offset.append(a * (c - b - v / 2) - 1)
        return self.points(roi, voxel_size, scale, offset)[None]

    def voxel_points(
        self, roi: Roi, voxel_size: Sequence[float], region: Roi, region_voxel_size: Sequence[float]
    ) -> torch.Tensor:
        """Source points of `roi`'s voxels in voxels of `region` (0 the first centre; x first)."""
        scale = [1 / v for v in region_voxel_size]
        offset = [
            (c - b) / v - 0.5
            for c, b, v in zip(self.centre, region.begin, region_voxel_size, strict=True)
        ]
        return self.points(roi, voxel_size, scale, offset)

    def source_points(self, roi: Roi, voxel_size: Sequence[float]) -> torch.Tensor:
        """Where the voxel centres of `roi` are read from: (dims, *shape) float32.

        World coordinates relative to :attr:`centre` (small numbers keep float32
        exact to far below a voxel), axes in array order (z, y, x).
        """
        dims = self.dims
        points = self.points(roi, voxel_size, [1.0] * dims, [0.0] * dims)
        return torch.movedim(points.flip(-1), -1, 0)

    def reach(self, roi: Roi, voxel_size: Sequence[float]) -> np.ndarray:
        """Per axis, a bound on the displacement (nm) at `roi`'s voxel centres.

        Exact at the control planes along axis 0 (:meth:`planes`); between them,
        linear interpolation never exceeds its values, and a cubic spline stays
        inside its B-spline coefficients' range (its basis is non-negative and sums
        to one), so along that one axis their largest magnitude bounds it. A bound
        from the whole field's coefficients would be looser along every axis: for
        random displacements it doubled the region read.
        """
        if self.field is None:
            return np.zeros(self.dims)
        _, plane = self.planes(roi, voxel_size)
        values = plane.reshape(plane.shape[0], -1, self.dims)
        if self.interpolation == "cubic":
            coefficients = torch.from_numpy(spline(plane.shape[0]).c.astype(np.float32))
            values = torch.tensordot(coefficients, values, dims=([1], [0]))
        return values.abs().amax((0, 1)).numpy()[::-1].astype(np.float64)

    def bounds(self, roi: Roi, voxel_size: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """World box holding every source point of `roi`.

        The rotated box's corners, grown by the largest displacement (:meth:`reach`).
        """
        axes = voxel_centres(roi, voxel_size)
        corners = np.array(np.meshgrid(*[[x[0], x[-1]] for x in axes], indexing="ij"))
        corners = corners.reshape(len(axes), -1).T - self.centre
        rotated = corners @ self.matrix.T + self.centre
        reach = self.reach(roi, voxel_size)
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
        interpolation: `linear` or `cubic` displacement between control points.

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
        interpolation: str = "linear",
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
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        self.interpolation = interpolation
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
        displacement = None
        if elastic:
            noise = rng.normal(size=(self.dims, *n)) * np.reshape(
                self.sigma, (-1,) + (1,) * self.dims
            )
            displacement = noise.astype(np.float32)
        return Warp(
            centre=np.asarray(roi.center, float),
            matrix=matrix,
            grid_begin=first,
            grid_step=extent / (n - 1),
            field=displacement,
            interpolation=self.interpolation,
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
