"""Chunk-level checks of one zarr array: every chunk present, a sample decoded and finite.

The first two of the data checks that :func:`~dacapo_hydra.data.checks.check_split`
runs before work starts (see :mod:`dacapo_hydra.data.checks`): only keys are
compared for presence (:func:`check_chunks`), and a sample of whole raw chunks,
spread over the region (:func:`sample_positions`), is decoded
(:func:`check_raw_sample`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.store import (
    Box,
    chunk_name,
    full_box,
    grid_ranges,
    present_keys,
    read_boxes,
    stored_keys,
    undecodable_chunk,
    unreadable,
)
from dacapo_hydra.errors import DataError

# Raw voxels decoded per raw array at most (whole chunks; at least one chunk).
SAMPLE_VOXELS = 2**22
# Chunk keys named in a message.
SHOWN = 5


@dataclass
class Cost:
    """What the checks touched, for the log line."""

    keys: int = 0
    chunks: int = 0
    raw_voxels: int = 0
    label_voxels: int = 0


def sample_positions(grid: Sequence[int], count: int) -> list[tuple[int, ...]]:
    """At most `count` positions on a grid of shape `grid`, spread over all of it.

    All positions where they are at most `count`. Else the grid's diagonal
    (position `i * n // m` on an axis of `n`, for `i` below the longest axis's
    `m`), which meets every slab along every axis, evenly thinned where longer
    than `count`; then the points of an even lattice, centred, while room is left.

    Examples:
        >>> sample_positions((2, 2), 8)
        [(0, 0), (0, 1), (1, 0), (1, 1)]
        >>> sample_positions((4, 2), 4)
        [(0, 0), (1, 0), (2, 1), (3, 1)]

    """
    count = max(1, count)
    if math.prod(grid) <= count:
        return list(itertools.product(*(range(n) for n in grid)))
    longest = max(grid)
    diagonal = [tuple(i * n // longest for n in grid) for i in range(longest)]
    if longest >= count:
        picks = np.unique(np.round(np.linspace(0, longest - 1, count)).astype(int))
        return [diagonal[i] for i in picks]
    chosen = dict.fromkeys(diagonal)
    room = count - len(chosen)
    stride = 1
    while math.prod(-(-n // stride) for n in grid) > room:
        stride += 1
    lattice = [range((n - 1 - (-(-n // stride) - 1) * stride) // 2, n, stride) for n in grid]
    for position in itertools.product(*lattice):
        if len(chosen) >= count:
            break
        chosen.setdefault(position)
    return sorted(chosen)


def _leaf_box(leaf: ZarrArray, region: Roi) -> Box | None:
    """Voxel slices (all axes) of `leaf` covering `region`, or None if they miss it."""
    inside = leaf.roi.intersect(region)
    if inside.empty():
        return None
    spatial = leaf.to_voxels(leaf.snap(inside))
    lead = (slice(None),) * (leaf.array.ndim - leaf.dims)
    return full_box(leaf.array.shape, lead + spatial)


def check_chunks(leaf: ZarrArray, region: Roi, label: str, cost: Cost | None = None) -> None:
    """Raise unless the store holds every chunk (shard) of `leaf` inside `region`.

    Compares keys only (:func:`~dacapo_hydra.data.store.present_keys`).

    Args:
        leaf: the zarr array.
        region: world box, nm.
        label: where the array sits in the config, for the message.
        cost: counts the keys compared.

    Raises:
        DataError: naming the array and the first missing keys, with their count.

    """
    box = _leaf_box(leaf, region)
    if box is None:
        return
    keys = stored_keys(leaf.array, box)
    found = present_keys(leaf.array, keys)
    if cost is not None:
        cost.keys += len(keys)
    missing = [k for k in keys if k not in found]
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
        raise DataError(
            f"{label} ({leaf.where}): {len(missing)} of the {len(keys)} chunks inside the "
            f"region used {region} are missing from the store ({shown}); zarr would read "
            f"them as the fill value {leaf.array.fill_value}. Restore them, or, where the "
            "fill value is meant (zarr skips writing chunks that hold only the fill "
            "value), mark the array `sparse: true`"
        )


def _non_finite(leaf: ZarrArray, chunk: tuple[slice, ...], data: np.ndarray, where: str) -> str:
    """The message for a decoded raw `chunk` holding NaN or infinity: its first such voxel."""
    array = leaf.array
    lead = array.ndim - leaf.dims
    bad = np.argwhere(~np.isfinite(data))
    index = bad[0] + [s.start for s in chunk]
    kind = "NaN" if np.isnan(data[tuple(bad[0])]) else "infinity"
    voxel = [int(i) for i in index[lead:]]
    world = [o + i * v for o, i, v in zip(leaf.offset, voxel, leaf.voxel_size, strict=True)]
    position = [int(i) // c for i, c in zip(index, array.chunks, strict=True)]
    name = chunk_name(array, position)
    return (
        f"{where} holds {kind} at voxel {voxel} (world {world} nm, chunk {name}; "
        f"{len(bad)} non-finite values in that chunk); raw must be finite: fill "
        "those voxels or leave that region out"
    )


def check_raw_sample(
    leaf: ZarrArray,
    region: Roi,
    label: str,
    sample_voxels: int = SAMPLE_VOXELS,
    cost: Cost | None = None,
) -> None:
    """Decode a sample of `leaf`'s chunks inside `region`; refuse NaN and infinity.

    The sample is :func:`sample_positions` of the region's chunk grid, at most
    `sample_voxels` voxels (whole chunks, all channels; at least one chunk).

    Args:
        leaf: a raw zarr array.
        region: world box, nm.
        label: where the array sits in the config, for the message.
        sample_voxels: voxel budget.
        cost: counts the chunks and voxels read.

    Raises:
        DataError: a chunk does not decode (naming it), or floating-point raw holds
            NaN or infinity (naming the voxel, its world position and its chunk).

    """
    box = _leaf_box(leaf, region)
    if box is None:
        return
    array = leaf.array
    lead = array.ndim - leaf.dims
    chunks = array.chunks[lead:]
    ranges = grid_ranges(chunks, box[lead:])
    per_chunk = math.prod(chunks) * math.prod(array.shape[:lead])
    floating = np.issubdtype(array.dtype, np.floating)
    where = f"{label} ({leaf.where})"
    boxes = [
        box[:lead]
        + tuple(
            slice(r[i] * c, min((r[i] + 1) * c, n))
            for r, i, c, n in zip(ranges, position, chunks, array.shape[lead:], strict=True)
        )
        for position in sample_positions([len(r) for r in ranges], sample_voxels // per_chunk)
    ]
    for chunk, data in zip(boxes, read_boxes(array, boxes), strict=True):
        if isinstance(data, Exception):
            # One box per spatial chunk: with a chunked channel axis, find the chunk.
            found = undecodable_chunk(array, chunk)
            first = [b.start // c for b, c in zip(chunk, array.chunks, strict=True)]
            name, err = found if found else (chunk_name(array, first), data)
            raise DataError(unreadable(where, name, err)) from data
        if cost is not None:
            cost.chunks += 1
            cost.raw_voxels += data.size
        if floating and not np.isfinite(data).all():
            raise DataError(_non_finite(leaf, chunk, data, where))
