"""A bounded, deterministic sample of raw intensities, for measuring normalisation values.

:class:`~dacapo_hydra.data.normalize.Normalizer` measures its `lo`/`hi` on this
sample of the training raw, once, when a run is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from dacapo_hydra.data.array import Array, ZarrArray

# Voxels sampled from the training raw: 2**21 (8 MiB as float32), shared between datasets.
SAMPLE_VOXELS = 2**21
# A large array is sampled in at least this many blocks, spread over the volume.
SAMPLE_BLOCKS = 32


def sample_raw(
    raws: Mapping[str, Array | np.ndarray], max_voxels: int = SAMPLE_VOXELS, seed: int = 0
) -> np.ndarray:
    """A bounded, deterministic sample of raw values spread over whole volumes (float64, 1-D).

    Each array gets an equal share of `max_voxels`; one that fits its share is
    read whole. A larger one is read in blocks, each starting at a chunk corner
    and no larger than a chunk, so each decodes one chunk; blocks are at most
    `share / SAMPLE_BLOCKS` voxels (32 blocks at least, where there are that
    many chunks), at chunk positions drawn with a fixed seed over the whole
    volume, so the same data always gives the same sample.

    Cost: at most `max_voxels` values kept (16 MiB as float64) and, per array,
    at most `max(SAMPLE_BLOCKS, share / chunk voxels)` chunks decoded, whatever
    the volume's size, so the time does not grow with the volume (the figures:
    README, "Benchmarks"). Channels are pooled; non-finite values are dropped.

    Args:
        raws: arrays by name (lazy :class:`Array` or in-memory numpy arrays).
        max_voxels: values kept, at most (over all arrays).
        seed: seed of the block positions.

    """
    parts = []
    share = max(1, max_voxels // max(1, len(raws)))
    for i, array in enumerate(raws.values()):
        rng = np.random.default_rng([seed, i])
        if isinstance(array, np.ndarray):
            flat = array.reshape(-1)
            if flat.size > share:
                flat = flat[np.sort(rng.choice(flat.size, share, replace=False))]
            parts.append(flat.astype(np.float64))
        else:
            parts.append(_sample_array(array, share, rng))
    sample = np.concatenate(parts) if parts else np.zeros(0)
    return sample[np.isfinite(sample)]


def _sample_array(array: Array, share: int, rng: np.random.Generator) -> np.ndarray:
    shape = array.spatial_shape
    channels = array.num_channels or 1
    if math.prod(shape) * channels <= share:
        return array._read(tuple(slice(0, n) for n in shape)).astype(np.float64).reshape(-1)
    dims = len(shape)
    step = (
        _chunk_shape(array)
        or (max(1, int((share / channels / SAMPLE_BLOCKS) ** (1 / dims))),) * dims
    )
    grid = tuple(math.ceil(n / s) for n, s in zip(shape, step, strict=True))
    # Blocks as large as `SAMPLE_BLOCKS` of them (or one per chunk, if fewer) allow.
    blocks = min(math.prod(grid), SAMPLE_BLOCKS)
    side = max(1, int((share / channels / blocks) ** (1 / dims)))
    block = tuple(min(s, side, n) for s, n in zip(step, shape, strict=True))
    count = min(math.prod(grid), max(1, share // (math.prod(block) * channels)))
    picks = np.sort(rng.choice(math.prod(grid), count, replace=False))
    values = []
    for position in zip(*np.unravel_index(picks, grid), strict=True):
        index = tuple(
            slice(p * s, min(p * s + b, n))
            for p, s, b, n in zip(position, step, block, shape, strict=True)
        )
        values.append(array._read(index).astype(np.float64).reshape(-1))
    return np.concatenate(values)


def _chunk_shape(array: Array) -> tuple[int, ...] | None:
    """Spatial chunk shape of the zarr array under `array` (through same-grid transforms)."""
    while not isinstance(array, ZarrArray):
        source = getattr(array, "source", None)
        if not isinstance(source, Array) or source.spatial_shape != array.spatial_shape:
            return None
        array = source
    return tuple(int(c) for c in array.array.chunks[-array.dims :])
