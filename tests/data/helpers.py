"""Small hand-made arrays for the data tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def write_volume(
    path: Path,
    shape: Sequence[int] = (32, 32, 32),
    chunk: int = 8,
    raw_dtype: str = "float32",
    zarr_format: int = 3,
    shard: int | None = None,
) -> Path:
    """A zarr container on disk with `raw`, `gt` and `mask` arrays at 8 nm, every chunk stored.

    Raw varies (so normalisation has a range), gt holds one object everywhere (label
    1), the mask is 1 everywhere. `shard` (zarr 3 only) stores `shard`-voxel shards
    of `chunk`-voxel chunks.
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    dims = len(shape)
    extra = {"shards": (shard,) * dims} if shard else {}
    values = {
        "raw": (np.indices(shape).sum(0) % 50 + 1).astype(raw_dtype),
        "gt": np.ones(shape, np.uint64),
        "mask": np.ones(shape, np.uint8),
    }
    for name, data in values.items():
        array = root.create_array(
            name,
            shape=shape,
            chunks=(chunk,) * dims,
            dtype=data.dtype,
            config={"write_empty_chunks": True},
            **extra,
        )
        array[...] = data
        array.attrs.update({"voxel_size": [8.0] * dims, "offset": [0.0] * dims})
    return path


def volume_config(
    path: Path, validate: bool = False, dims: int = 3, **dataset: Any
) -> dict[str, Any]:
    """A datasplit node training (and validating, if asked) on the `dims`-D volume at `path`.

    Normalisation is given (minmax 0-100), so opening it reads no raw.
    """
    entry = {
        "name": "d",
        **{part: {"container": str(path), "dataset": part} for part in ("raw", "gt", "mask")},
        **dataset,
    }
    return {
        "dims": dims,
        "train": [entry],
        "validate": [{**entry, "name": "v"}] if validate else [],
        "normalize": {"mode": "minmax", "min": 0, "max": 100},
    }
