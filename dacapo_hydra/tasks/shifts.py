"""Pairs of voxels at a fixed offset inside an array."""

from __future__ import annotations

from collections.abc import Sequence


def shifted_pairs(
    shape: Sequence[int], offset: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index pairs (here, there) so that `there` = `here` + `offset`, both inside `shape`."""
    here, there = [], []
    for size, o in zip(shape, offset, strict=True):
        # An offset as long as the axis leaves no pair: both slices are then empty.
        here.append(slice(max(0, -o), max(0, size - max(0, o))))
        there.append(slice(max(0, o), max(0, size - max(0, -o))))
    return tuple(here), tuple(there)
