"""Distances to object boundaries in world units, and where a crop lets them be known.

The maths the distance-type tasks share (:mod:`~dacapo_hydra.tasks.scaled_distance`):
signed distances to a class's boundary, inner distances of touching instances, and
the voxels whose distance a crop can tell.

The transforms are the `edt` package's exact Euclidean distance transforms:
multi-label (each voxel's distance to the nearest voxel of another label, all
labels in one pass: no loop over objects) and anisotropic (the voxel size), and
faster than two scipy passes per crop on a binary one (README, "Benchmarks").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import edt
import numpy as np


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
    # Labels 1 (outside) and 2 (inside): one pass gives both sides' distance to the other.
    sides = foreground.view(np.uint8) + np.uint8(1)
    d = edt.edt(sides, anisotropy=tuple(map(float, voxel_size)), black_border=False)
    half = 0.5 * min(voxel_size)
    d = np.where(foreground, d - half, half - d)
    return np.clip(d, -clip_distance, clip_distance).astype(np.float32)


def inner_distance(
    labels: np.ndarray, voxel_size: Sequence[float], clip_distance: float
) -> np.ndarray:
    """Distance (nm) from each object voxel to the nearest voxel of another label.

    Touching objects each get their own boundary. Background is 0; object voxels
    are at least half a voxel. The crop's edge is not a boundary (whether it is
    one is unknown: see `known_distance`). Clipped to `clip_distance`.
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    d = edt.edt(labels, anisotropy=tuple(map(float, voxel_size)), black_border=False)
    half = 0.5 * min(voxel_size)
    # An object alone in the crop has no other label to be far from: infinite, clipped.
    inside = np.minimum(d - half, clip_distance, dtype=np.float32)
    return np.where(labels != 0, inside, np.float32(0))


def distance_to_unknown(mask: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Distance (nm) from each voxel to the nearest unannotated voxel or the crop's outside."""
    known = np.ascontiguousarray(mask, dtype=bool)
    if known.all():  # the nearest unknown voxel is outside, straight along one axis
        steps = np.ix_(
            *(
                (np.minimum(np.arange(1, n + 1), np.arange(n, 0, -1)) * v).astype(np.float32)
                for n, v in zip(known.shape, voxel_size, strict=True)
            )
        )
        return np.broadcast_to(reduce(np.minimum, steps), known.shape).copy()
    return edt.edt(known, anisotropy=tuple(map(float, voxel_size)), black_border=True)


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
