"""Distances to object boundaries in world units, and where a crop lets them be known.

The maths the distance-type tasks share (:mod:`~dacapo_hydra.tasks.scaled_distance`):
signed distances to a class's boundary, inner distances of touching instances, and
the voxels whose distance a crop can tell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt, find_objects


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
