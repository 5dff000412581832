"""Decoded chunks of read-only zarr arrays, kept between reads within a byte budget.

Training draws crop after crop from the same volumes, and zarr-python decodes every
chunk a read touches on every read, through its event loop, which costs several times
the decompression itself. A warped 132³ crop reads some 48 chunks of 64³, so reading
was a large share of a sample's cost (the figures: README, "Benchmarks").
zarr 3 keeps no decoded chunks (its experimental `CacheStore` keeps the encoded
bytes, so the decoding and the round trips remain), hence this small layer:
decoded chunks in cachetools' `LRUCache`, sized in bytes, least recently used out
first. Each process has its own (a DataLoader worker's copy starts empty).

Only for arrays that nothing writes while they are read (training data, opened
read-only): a cached chunk is never checked against the store again.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import numpy as np
import zarr
from cachetools import LRUCache


class ChunkCache:
    """Decoded zarr chunks, least recently used out first, within `max_bytes`.

    Args:
        max_bytes: the most bytes of decoded chunks kept (0: keep none, read through).

    Example:
        >>> import tempfile
        >>> store = tempfile.mkdtemp()
        >>> z = zarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="uint8")
        >>> z[...] = np.arange(64, dtype="uint8").reshape(8, 8)
        >>> cache = ChunkCache(2**20)
        >>> cache.read(z, (slice(3, 5), slice(0, 2))).tolist()
        [[24, 25], [32, 33]]
        >>> cache.info()["chunks"], cache.info()["hits"]
        (2, 0)
        >>> cache.read(z, (slice(0, 8), slice(1, 3)))[:, 0].tolist()
        [1, 9, 17, 25, 33, 41, 49, 57]
        >>> cache.info()["hits"]
        2

    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"chunk cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._reset()

    def _reset(self) -> None:
        self._chunks: LRUCache = LRUCache(max(self.max_bytes, 1), getsizeof=_nbytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict[str, Any]:
        # A copy in another process (a spawned loader worker) starts empty.
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_bytes = state["max_bytes"]
        self._reset()

    def info(self) -> dict[str, int]:
        """Chunks and bytes held, and the hits and misses (in chunks) so far."""
        with self._lock:
            return {
                "chunks": len(self._chunks),
                "bytes": int(self._chunks.currsize),
                "hits": self.hits,
                "misses": self.misses,
            }

    def read(self, array: zarr.Array, index: tuple[slice, ...]) -> np.ndarray:
        """`array[index]` (unit-step slices over every axis), from kept chunks where it can.

        The chunks not kept are read in one zarr call (the box of chunks that holds
        them all) and kept. A read whose chunks outgrow the budget reads through.
        """
        shape, chunks = array.shape, array.chunks
        bounds = [s.indices(n)[:2] for s, n in zip(index, shape, strict=True)]
        ranges = [
            range(lo // c, (hi - 1) // c + 1) if hi > lo else range(0)
            for (lo, hi), c in zip(bounds, chunks, strict=True)
        ]
        count = math.prod(len(r) for r in ranges)
        if count == 0 or count * math.prod(chunks) * array.dtype.itemsize > self.max_bytes:
            return np.asarray(array[index])
        name = str(array.store_path)
        found: dict[tuple[int, ...], np.ndarray] = {}
        with self._lock:
            for key in itertools.product(*ranges):
                chunk = self._chunks.get((name, key))
                if chunk is not None:
                    found[key] = chunk
            self.hits += len(found)
            self.misses += count - len(found)
        if len(found) < count:
            found.update(self._fetch(array, name, ranges, found))
        out = np.empty([hi - lo for lo, hi in bounds], array.dtype)
        for key, chunk in found.items():
            src, dst = [], []
            for k, c, (lo, hi) in zip(key, chunks, bounds, strict=True):
                a, b = max(k * c, lo), min((k + 1) * c, hi)
                src.append(slice(a - k * c, b - k * c))
                dst.append(slice(a - lo, b - lo))
            out[tuple(dst)] = chunk[tuple(src)]
        return out

    def _fetch(
        self,
        array: zarr.Array,
        name: str,
        ranges: list[range],
        found: dict[tuple[int, ...], np.ndarray],
    ) -> dict[tuple[int, ...], np.ndarray]:
        """Read the box of chunks holding the missing ones, keep each chunk, return them."""
        missing = np.array(
            [key for key in itertools.product(*ranges) if key not in found], dtype=np.int64
        )
        first, last = missing.min(0), missing.max(0) + 1
        chunks = array.chunks
        box = tuple(
            slice(int(f) * c, min(int(e) * c, n))
            for f, e, c, n in zip(first, last, chunks, array.shape, strict=True)
        )
        data = np.asarray(array[box])
        read: dict[tuple[int, ...], np.ndarray] = {}
        for key in itertools.product(
            *(range(int(f), int(e)) for f, e in zip(first, last, strict=True))
        ):
            part = tuple(
                slice((k - int(f)) * c, (k - int(f) + 1) * c)
                for k, f, c in zip(key, first, chunks, strict=True)
            )
            chunk = np.array(data[part])  # its own memory: the box is not kept alive
            chunk.flags.writeable = False
            read[key] = chunk
        with self._lock:
            for key, chunk in read.items():
                self._chunks[(name, key)] = chunk
        return {key: read[key] for key in map(tuple, missing.tolist())}


def _nbytes(chunk: np.ndarray) -> int:
    return int(chunk.nbytes)
