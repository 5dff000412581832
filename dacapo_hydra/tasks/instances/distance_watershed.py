"""Instances from a predicted distance map: seeds at its maxima, grown by watershed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import label as connected_components
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

# Distances are quantised to this fraction of the smallest voxel for h-maxima, which
# is exact on integers (scikit-image warns that it is imprecise on floats).
_QUANTUM = 0.01


def distance_watershed(
    distance: np.ndarray,
    foreground: np.ndarray,
    voxel_size: Sequence[float],
    h: float | None = None,
    seed_distance: float | None = None,
) -> np.ndarray:
    """Instances (*spatial) uint64 grown from the maxima of a distance map (nm).

    Seeds are the connected regions of the h-maxima of `distance` (maxima at least
    `h` nm above every path to a higher one: a saddle between two touching objects
    less than `h` deep does not split them), restricted to `distance >
    seed_distance` if given; with `h` None, seeds are the connected regions above
    `seed_distance`. Seeds grow down the map (scikit-image's watershed on
    `-distance`) over `foreground`. A connected part of the foreground that holds
    no seed (its maximum is lower than `h` above its floor, or below
    `seed_distance`) becomes one object of its own rather than being lost.

    Args:
        distance: (*spatial) predicted distance into objects, nm.
        foreground: (*spatial) bool, the voxels that belong to some object.
        voxel_size: nm per voxel (for the quantisation of h-maxima).
        h: nm; the dynamic of the maxima kept as seeds.
        seed_distance: nm; seeds only where the distance exceeds it.

    Examples:
        >>> d = np.array([0, 1, 2, 3, 2, 1.5, 2, 3, 2, 1, 0], float)
        >>> d[3] = 3.2  # two maxima with a saddle of 1.5 (1.7) below them
        >>> distance_watershed(d, d > 0.5, (1.0,), h=1.0).tolist()
        [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0]
        >>> distance_watershed(d, d > 0.5, (1.0,), h=2.0).tolist()
        [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]

    """
    if h is None and seed_distance is None:
        raise ValueError("post-processing: distance watershed needs h or seed_distance")
    foreground = foreground.astype(bool)
    if h is None:
        seeds = foreground & (distance > seed_distance)
    else:
        quantum = _QUANTUM * float(min(voxel_size))
        levels = np.round(np.where(foreground, distance, distance.min()) / quantum)
        levels = (levels - levels.min()).astype(np.int64)
        seeds = h_maxima(levels, max(1, int(round(h / quantum)))).astype(bool) & foreground
        if seed_distance is not None:
            seeds &= distance > seed_distance
    markers, n = connected_components(seeds)
    parts, _ = connected_components(foreground)
    unseeded = np.setdiff1d(np.unique(parts[parts > 0]), np.unique(parts[markers > 0]))
    if unseeded.size:
        extra = np.isin(parts, unseeded)
        markers[extra] = n + np.searchsorted(unseeded, parts[extra]) + 1
    return watershed(-distance, markers=markers, mask=foreground).astype(np.uint64)
