"""Small hand-made arrays for the data tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from dacapo_hydra.data.array import ZarrArray


def memory_array(
    data: np.ndarray,
    voxel_size: Sequence[float],
    offset: Sequence[float] | None = None,
    where: str = "mem",
    chunk: int = 8,
) -> ZarrArray:
    """`data` in an in-memory zarr array with the given voxel size and offset (nm)."""
    array = zarr.create_array(
        zarr.storage.MemoryStore(),
        shape=data.shape,
        chunks=(chunk,) * data.ndim,
        dtype=data.dtype,
    )
    array[...] = data
    return ZarrArray(
        array, voxel_size, offset if offset is not None else [0.0] * len(voxel_size), where
    )
