"""Separable interpolation weights, and resampling a box at given points.

The warp's displacement lives on a coarse control-point grid; between control
points it is interpolated linearly or with a natural cubic spline, separately
along each axis, so a crop's displacement is one small weight matrix per axis
(:func:`axis_weights`) contracted with the grid. The crop is
then read from the box it needs: bi/trilinear with `grid_sample`
(:func:`resample`), or by nearest-neighbour gathering for labels (:func:`nearest`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.interpolate import BSpline, make_interp_spline

INTERPOLATIONS = ("linear", "cubic")


def resample(data: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`data` (C, *n) interpolated (bi/trilinear) at `grid` (1, *shape, dims), as (C, *shape).

    `grid` is in `grid_sample`'s units (-1 and 1 the first and last voxel
    centres, last axis x first; :meth:`Warp.points`); beyond the edge the
    border value is repeated.
    """
    out = F.grid_sample(
        data[None], grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0]


def nearest(points: torch.Tensor, spatial: Sequence[int]) -> np.ndarray:
    """Flat (C order) index into an array of shape `spatial` of the voxel nearest each point.

    `points` (*shape, dims) are in voxel units, x first (:meth:`Warp.voxel_points`);
    indices beyond the edge are clamped to it. Gathering with them
    (`np.take(data.reshape(C, -1), index, axis=1)`) is nearest-neighbour
    interpolation exact for any dtype (uint64 ids would not survive
    `grid_sample`'s float32).
    """
    dims = len(spatial)
    flat = torch.zeros(points.shape[:-1], dtype=torch.int64)
    for axis, n in enumerate(spatial):
        index = torch.round(points[..., dims - 1 - axis]).long().clamp_(0, n - 1)
        flat += index * math.prod(spatial[axis + 1 :])
    return flat.numpy()


@lru_cache(maxsize=64)
def spline(n: int) -> BSpline:
    """The natural interpolating cubic spline of the unit vectors at 0, ..., n - 1.

    Evaluated at x it gives the weights of the n control values there; its
    coefficients `c` (n + 2, n) map control values to B-spline coefficients.
    """
    return make_interp_spline(np.arange(n), np.eye(n), k=3, bc_type="natural")


@lru_cache(maxsize=256)
def axis_weights(interpolation: str, n: int, start: float, step: float, count: int) -> np.ndarray:
    """Weights (count, n) that interpolate `n` control values at `count` positions.

    Positions are `start + i * step` in control-point units (0 the first control
    point), clipped to the control grid. `linear` has two non-zero weights per
    row; `cubic` is the natural interpolating cubic spline (C², reproduces the
    control values at the control points).

    Example:
        >>> axis_weights("linear", 3, 0.0, 0.5, 5).tolist()
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]

    """
    positions = np.clip(start + step * np.arange(count), 0, n - 1)
    if interpolation == "cubic":
        return spline(n)(positions).astype(np.float32)
    low = np.minimum(np.floor(positions).astype(int), n - 2)
    frac = positions - low
    w = np.zeros((count, n), np.float32)
    rows = np.arange(count)
    w[rows, low] = 1 - frac
    w[rows, low + 1] = frac
    return w
