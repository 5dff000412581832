"""Regions of interest in world units (nm), axis order z, y, x (2D: y, x)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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

    def __str__(self) -> str:
        fmt = ", ".join(f"{b:g}:{e:g}" for b, e in zip(self.begin, self.end, strict=True))
        return f"[{fmt}] nm"
