"""Remove objects smaller than a size, and number the rest 1..n."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def relabel(segments: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Consecutive uint64 ids 1..n for the non-zero segments (at `keep`, if given); 0 elsewhere.

    Examples:
        >>> relabel(np.array([0, 7, 7, 3])).tolist()
        [0, 2, 2, 1]

    """
    keep = segments != 0 if keep is None else keep & (segments != 0)
    out = np.zeros(segments.shape, np.uint64)
    _, inverse = np.unique(segments[keep], return_inverse=True)
    out[keep] = inverse.ravel() + 1
    return out


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels with every object of fewer than `min_size` voxels set to 0, ids 1..n.

    scikit-image's `remove_small_objects` keeps the ids of what it keeps; here the
    survivors are renumbered at once, so this is one `np.unique` pass, not two.

    Examples:
        >>> remove_small(np.array([1, 1, 1, 5, 9, 9]), 2).tolist()
        [1, 1, 1, 0, 2, 2]

    """
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    survive = (counts >= max(int(min_size), 1)) & (ids != 0)
    new_ids = np.zeros(ids.size, np.uint64)
    new_ids[survive] = np.arange(1, int(survive.sum()) + 1, dtype=np.uint64)
    return new_ids[inverse.reshape(labels.shape)]


def object_volume_voxels(radius: float, voxel_size: Sequence[float]) -> float:
    """Voxels in a ball (3D) or disc (2D) of `radius` nm: the volume of a typical object."""
    dims = len(voxel_size)
    volume = math.pi * radius**2 if dims == 2 else 4 / 3 * math.pi * radius**3
    if dims not in (2, 3):
        volume = (2 * radius) ** dims
    return volume / float(np.prod(voxel_size))


def min_size_grid(
    min_sizes: Sequence[int] | None, radius: float | None, voxel_size: Sequence[float]
) -> list[int]:
    """The minimum object sizes (voxels) that validation sweeps.

    Given sizes are used as they are. Otherwise they follow the typical object
    (`radius`, nm, measured on the training labels): 0, 10 % and 25 % of its
    volume, so that fragments of a few voxels go at any voxel size; without a
    measured radius, 0, 20 and 100 voxels.
    """
    if min_sizes:
        sizes = [int(s) for s in min_sizes]
        if any(s < 0 for s in sizes):
            raise ValueError(f"task.min_sizes: need voxel counts >= 0, got {sizes}")
        return sizes
    if not radius:
        return [0, 20, 100]
    volume = object_volume_voxels(radius, voxel_size)
    return sorted({0, *(max(1, round(f * volume)) for f in (0.1, 0.25))})
