"""Regions of interest in world units (nm), axis order z, y, x (2D: y, x).

A :class:`Roi` is a box in the world; :meth:`Roi.to_slices` is the one place a box
becomes voxel indices on a grid (an array's, a prediction's, a block's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# How far (in voxels) a box may sit off a grid and still count as on it: float rounding
# of world coordinates (such as 3.24 nm steps), never a real fraction of a voxel.
GRID_TOLERANCE = 1e-6


def as_tuple(values: Sequence[float] | np.ndarray, name: str = "value") -> tuple[float, ...]:
    """Return `values` as a tuple of floats, refusing scalars and NaN."""
    try:
        out = tuple(float(v) for v in values)
    except TypeError as err:
        raise ValueError(f"{name} must be a list of numbers, got {values!r}") from err
    if any(np.isnan(out)):
        raise ValueError(f"{name} must not contain NaN, got {values!r}")
    return out


@dataclass(frozen=True)
class Roi:
    """An axis-aligned box in world units: `begin` (inclusive) and `shape`."""

    begin: tuple[float, ...]
    shape: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.begin) != len(self.shape):
            raise ValueError(f"Roi begin {self.begin} and shape {self.shape} differ in length")

    @property
    def dims(self) -> int:
        """Number of spatial dimensions."""
        return len(self.begin)

    @property
    def end(self) -> tuple[float, ...]:
        """Exclusive end corner."""
        return tuple(b + s for b, s in zip(self.begin, self.shape, strict=True))

    @property
    def center(self) -> tuple[float, ...]:
        """Centre point."""
        return tuple(b + s / 2 for b, s in zip(self.begin, self.shape, strict=True))

    def empty(self) -> bool:
        """Whether the box holds no volume."""
        return any(s <= 0 for s in self.shape)

    def grow(self, amount: Sequence[float]) -> Roi:
        """Grow by `amount` on both sides of each axis."""
        return Roi(
            tuple(b - a for b, a in zip(self.begin, amount, strict=True)),
            tuple(s + 2 * a for s, a in zip(self.shape, amount, strict=True)),
        )

    def shift(self, by: Sequence[float]) -> Roi:
        """Translate by `by`."""
        return Roi(tuple(b + d for b, d in zip(self.begin, by, strict=True)), self.shape)

    def intersect(self, other: Roi) -> Roi:
        """Intersection (may be empty)."""
        begin = tuple(max(a, b) for a, b in zip(self.begin, other.begin, strict=True))
        end = tuple(min(a, b) for a, b in zip(self.end, other.end, strict=True))
        return Roi(begin, tuple(max(0.0, e - b) for b, e in zip(begin, end, strict=True)))

    def contains(self, other: Roi) -> bool:
        """Whether `other` lies entirely inside this box."""
        return all(
            sb <= ob and oe <= se
            for sb, se, ob, oe in zip(self.begin, self.end, other.begin, other.end, strict=True)
        )

    def to_slices(self, origin: Sequence[float], voxel_size: Sequence[float]) -> tuple[slice, ...]:
        """Voxel slices of this box on the grid whose voxel 0 starts at `origin`.

        Exact: the box must start and end on the grid (up to float rounding), else
        nothing is rounded and a ValueError says so.

        Example:
            >>> Roi((16.0, 40.0), (32.0, 8.0)).to_slices((0.0, 8.0), (8.0, 4.0))
            (slice(2, 6, None), slice(8, 10, None))
            >>> Roi((4.0,), (8.0,)).to_slices((0.0,), (8.0,))
            Traceback (most recent call last):
            ...
            ValueError: ROI [4:12] nm is not aligned with the voxel grid (voxel_size (8.0,), offset (0.0,))

        Raises:
            ValueError: the box is off the grid, or its axes differ from the grid's.

        """  # noqa: E501
        vs = tuple(float(v) for v in voxel_size)
        offset = tuple(float(o) for o in origin)
        if not len(vs) == len(offset) == self.dims:
            raise ValueError(
                f"ROI {self} has {self.dims} axes; the grid (voxel_size {vs}, offset {offset}) "
                f"has {len(vs)}"
            )
        begin = np.subtract(self.begin, offset) / vs
        shape = np.asarray(self.shape, dtype=float) / vs
        steps = np.concatenate([begin, shape])
        if not np.allclose(steps, np.round(steps), rtol=0, atol=GRID_TOLERANCE):
            raise ValueError(
                f"ROI {self} is not aligned with the voxel grid (voxel_size {vs}, offset {offset})"
            )
        first = np.round(begin).astype(int).tolist()
        size = np.round(shape).astype(int).tolist()
        return tuple(slice(b, b + n) for b, n in zip(first, size, strict=True))

    def voxel_shape(self, voxel_size: Sequence[float]) -> tuple[int, ...]:
        """The box's shape in voxels of `voxel_size` (exact, as :meth:`to_slices`).

        Example:
            >>> Roi((8.0, 0.0), (40.0, 16.0)).voxel_shape((8.0, 4.0))
            (5, 4)

        """
        return tuple(s.stop for s in self.to_slices(self.begin, voxel_size))

    def __str__(self) -> str:
        fmt = ", ".join(f"{b:g}:{e:g}" for b, e in zip(self.begin, self.end, strict=True))
        return f"[{fmt}] nm"
