"""Local shape descriptors (Sheridan et al. 2022), as the `lsds` package computes them.

Written here because `lsds` pulls in gunpowder, which pins zarr < 3 (this project
stores volumes in zarr v3). The definition follows `lsd.train.local_shape_descriptor`:
per object and voxel, Gaussian-weighted (sigma in nm) statistics of the object's
voxels around it: the offset to their centre of mass, their variances, Pearson
correlations between axes, and their mass; each scaled into [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import find_objects, gaussian_filter

TRUNCATE = 3.0


def num_lsd_channels(dims: int) -> int:
    """Channels of the descriptor: offsets, variances, correlations, mass."""
    return dims + dims + dims * (dims - 1) // 2 + 1


def lsd_channel_names(dims: int) -> list[str]:
    """The descriptor's channels in order: offsets, variances, correlations, mass.

    Example:
        >>> lsd_channel_names(2)
        ['lsd offset y', 'lsd offset x', 'lsd variance y', 'lsd variance x', 'lsd correlation yx', 'lsd mass']

    """  # noqa: E501
    axes = "zyx"[3 - dims :] if dims <= 3 else [f"d{i}" for i in range(dims)]
    pairs = [f"{axes[i]}{axes[j]}" for i in range(dims) for j in range(i + 1, dims)]
    return [
        *(f"lsd offset {a}" for a in axes),
        *(f"lsd variance {a}" for a in axes),
        *(f"lsd correlation {p}" for p in pairs),
        "lsd mass",
    ]


def _box_coordinates(grown: tuple[slice, ...], voxel_size: np.ndarray) -> np.ndarray:
    """Coordinates (nm, dims x *box) of a box's voxels from its corner.

    The statistics don't depend on the origin, and small values keep float32 accurate.
    """
    axes = [
        (np.arange(s.stop - s.start) * v).astype(np.float32)
        for s, v in zip(grown, voxel_size, strict=True)
    ]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _object_descriptors(
    inside: np.ndarray, coords: np.ndarray, sigma: np.ndarray, sigma_voxels: np.ndarray
) -> list[np.ndarray]:
    """One object's descriptor channels over its grown box (unclipped, everywhere in it).

    Args:
        inside: (*box) bool, the object's voxels.
        coords: (dims, *box) nm from the box's corner.
        sigma: Gaussian sigma in nm, per axis.
        sigma_voxels: the same in voxels of the (downsampled) labels.

    """
    dims = inside.ndim

    def smooth(values: np.ndarray) -> np.ndarray:
        return gaussian_filter(
            values, sigma=sigma_voxels, mode="constant", cval=0.0, truncate=TRUNCATE
        )

    weight = inside.astype(np.float32)
    mass = smooth(weight)
    safe = np.where(mass == 0, np.float32(1), mass)
    masked = coords * weight
    centre = np.stack([smooth(masked[d]) for d in range(dims)]) / safe
    offset = (centre - coords) / sigma.reshape((-1,) + (1,) * dims) * 0.5 + 0.5
    second = {
        (i, j): smooth(masked[i] * coords[j]) / safe - centre[i] * centre[j]
        for i in range(dims)
        for j in range(i, dims)
    }
    variance = [np.maximum(second[(i, i)], 1e-3) for i in range(dims)]
    pairs = [(i, j) for i in range(dims) for j in range(i + 1, dims)]
    return [
        *offset,
        *[second[(i, i)] / sigma[i] ** 2 for i in range(dims)],
        *[second[p] / np.sqrt(variance[p[0]] * variance[p[1]]) * 0.5 + 0.5 for p in pairs],
        mass,
    ]


def local_shape_descriptors(
    labels: np.ndarray,
    sigma: Sequence[float],
    voxel_size: Sequence[float],
    downsample: int = 1,
) -> np.ndarray:
    """Descriptors (num_lsd_channels, *spatial) float32 in [0, 1]; 0 on background.

    Args:
        labels: instance labels (*spatial), 0 = background.
        sigma: Gaussian sigma in nm, per axis.
        voxel_size: nm per voxel.
        downsample: compute on every `downsample`-th voxel per axis and repeat the
            result, for speed.

    """
    dims = labels.ndim
    if downsample < 1:
        raise ValueError(f"task.downsample_lsds must be at least 1, got {downsample}")
    sigma = np.asarray(sigma, np.float64)
    sub = labels[(slice(None, None, downsample),) * dims]
    sub_voxel = np.asarray(voxel_size, np.float64) * downsample
    sigma_voxels = sigma / sub_voxel
    margin = np.ceil(TRUNCATE * sigma_voxels).astype(int) + 1
    out = np.zeros((num_lsd_channels(dims), *sub.shape), np.float32)

    ids, compact = np.unique(sub, return_inverse=True)
    compact = compact.reshape(sub.shape) + (0 if ids[0] == 0 else 1)
    for index, box in enumerate(find_objects(compact), start=1):
        if box is None:
            continue
        # Only the object's bounding box plus the filter's reach can be non-zero.
        grown = tuple(
            slice(max(0, s.start - m), min(n, s.stop + m))
            for s, m, n in zip(box, margin, sub.shape, strict=True)
        )
        inside = compact[grown] == index
        channels = _object_descriptors(
            inside, _box_coordinates(grown, sub_voxel), sigma, sigma_voxels
        )
        region = out[(slice(None), *grown)]
        for c, values in enumerate(channels):
            region[c][inside] = values[inside]

    np.clip(out, 0.0, 1.0, out=out)
    if downsample > 1:
        for axis in range(1, dims + 1):
            out = np.repeat(out, downsample, axis=axis)
        out = out[(slice(None), *[slice(0, n) for n in labels.shape])]
        out *= labels[None] != 0
    return out
