"""What a zarr array's store holds: its chunk keys, which of them exist, which decode.

A zarr array keeps one stored object per chunk (per shard, where the array is
sharded) under a key its metadata encodes: `c/0/1/2` in zarr 3, `0.1.2` or
`0/1/2` in zarr 2. These helpers enumerate the keys a box of an array needs
(:func:`stored_keys`, with zarr's own `encode_chunk_key`), ask the store which
of them exist (:func:`present_keys`, with zarr's store API), name the chunk of a
box that fails to decode (:func:`undecodable_chunk`), and find the metadata file
that is not JSON (:func:`unparsable_metadata`). Nothing here reads voxels except
:func:`undecodable_chunk`, which is meant for the error path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.sync import collect_aiterator, sync

# The files zarr keeps metadata in (zarr 3; zarr 2 groups, arrays, attributes, consolidated).
METADATA_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
# Where a box needs at least this fraction of an array's stored objects, the array's keys
# are listed once (one pass over its folder); below it, each key is asked for on its own,
# so a small region of a huge array never lists the whole array.
LIST_FRACTION = 0.25
# Existence queries, or chunk reads, in flight at once.
BATCH = 1024

Box = tuple[slice, ...]


def full_box(shape: Sequence[int], index: Sequence[slice] | None = None) -> Box:
    """`index` (slices over all axes, None meaning whole axes) with explicit bounds."""
    index = tuple(index) if index is not None else (slice(None),) * len(shape)
    return tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape, strict=True))


def stored_shape(array: zarr.Array) -> tuple[int, ...]:
    """Shape of the objects the store holds: the shard shape, or the chunk shape."""
    return tuple(array.shards or array.chunks)


def stored_grid(array: zarr.Array) -> tuple[int, ...]:
    """Number of stored objects (chunks or shards) along each axis."""
    return tuple(-(-n // c) for n, c in zip(array.shape, stored_shape(array), strict=True))


def grid_ranges(unit: Sequence[int], box: Box) -> list[range]:
    """Grid positions, per axis, of the blocks of shape `unit` that overlap `box`."""
    return [
        range(s.start // u, -(-s.stop // u)) if s.stop > s.start else range(0)
        for s, u in zip(box, unit, strict=True)
    ]


def stored_keys(array: zarr.Array, box: Box | None = None) -> list[str]:
    """Keys (relative to the array) of the stored objects holding part of `box`.

    Args:
        array: the zarr array.
        box: voxel slices over all axes, explicit bounds (:func:`full_box`); the
            whole array by default.

    Returns:
        One key per chunk (per shard, where sharded), in C order of the grid, as
        zarr encodes it (`c/0/1/2`, `0.1.2`, `0/1/2`).

    """
    box = full_box(array.shape) if box is None else box
    ranges = grid_ranges(stored_shape(array), box)
    return [array.metadata.encode_chunk_key(c) for c in itertools.product(*ranges)]


def _prefix(array: zarr.Array) -> str:
    path = array.store_path.path
    return f"{path}/" if path else ""


async def _exists(store: Store, keys: Sequence[str]) -> list[bool]:
    found: list[bool] = []
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        found += await asyncio.gather(*(store.exists(k) for k in batch))
    return found


def present_keys(array: zarr.Array, keys: Sequence[str]) -> set[str]:
    """Those of `keys` (from :func:`stored_keys`) that the array's store holds.

    Asks the store, never reads a chunk: one listing of the array's keys
    (`list_prefix`) where `keys` are at least `LIST_FRACTION` of the array's
    stored objects, else one existence query (`exists`) per key.
    """
    if not keys:
        return set()
    store, prefix = array.store_path.store, _prefix(array)
    if len(keys) >= LIST_FRACTION * math.prod(stored_grid(array)):
        listed = {k[len(prefix) :] for k in collect_aiterator(store.list_prefix(prefix))}
        return {k for k in keys if k in listed}
    flags = sync(_exists(store, [prefix + k for k in keys]))
    return {k for k, there in zip(keys, flags, strict=True) if there}


def chunk_boxes(array: zarr.Array, box: Box) -> Iterator[tuple[tuple[int, ...], Box]]:
    """Grid position and voxel box of each chunk that holds part of `box`.

    Chunks are zarr's read units: the inner chunks where the array is sharded.
    Boxes are clipped to the array's shape.
    """
    for coords in itertools.product(*grid_ranges(array.chunks, box)):
        yield (
            coords,
            tuple(
                slice(i * c, min((i + 1) * c, n))
                for i, c, n in zip(coords, array.chunks, array.shape, strict=True)
            ),
        )


def chunk_name(array: zarr.Array, coords: Sequence[int]) -> str:
    """The key of the chunk at grid position `coords`; its place in the shard where sharded."""
    if array.shards is None:
        return array.metadata.encode_chunk_key(tuple(coords))
    per = [s // c for s, c in zip(array.shards, array.chunks, strict=True)]
    shard = tuple(i // p for i, p in zip(coords, per, strict=True))
    inner = [i % p for i, p in zip(coords, per, strict=True)]
    return f"{array.metadata.encode_chunk_key(shard)} (inner chunk {inner})"


def unreadable(where: str, name: str, err: BaseException) -> str:
    """The one-line message for chunk `name` of the array at `where` failing with `err`."""
    reason = " ".join(f"{type(err).__name__}: {err}".split())
    return (
        f"{where}: chunk {name} cannot be decoded ({reason}); the file is truncated or "
        "corrupt: restore it, or rewrite that part of the array"
    )


async def _read(array: zarr.Array, boxes: Sequence[Box]) -> list[np.ndarray | BaseException]:
    reads = (array.async_array.getitem(box) for box in boxes)
    return list(await asyncio.gather(*reads, return_exceptions=True))


def read_boxes(array: zarr.Array, boxes: Sequence[Box]) -> list[np.ndarray | Exception]:
    """Each box of `array` read (concurrently, as zarr reads a selection), or its error.

    Raises:
        MemoryError: as any read that runs out of memory.

    """
    out: list[np.ndarray | Exception] = []
    for start in range(0, len(boxes), BATCH):
        for result in sync(_read(array, boxes[start : start + BATCH])):
            if isinstance(result, MemoryError) or (
                isinstance(result, BaseException) and not isinstance(result, Exception)
            ):
                raise result
            out.append(result if isinstance(result, Exception) else np.asarray(result))
    return out


def undecodable_chunk(array: zarr.Array, box: Box) -> tuple[str, Exception] | None:
    """The first chunk holding part of `box` whose read fails, with its error.

    Reads each chunk on its own: meant for the path where reading `box` failed,
    to name the culprit. None where every chunk reads (the failure lies elsewhere).
    """
    found = list(chunk_boxes(array, box))
    for (coords, _), result in zip(found, read_boxes(array, [b for _, b in found]), strict=True):
        if isinstance(result, Exception):
            return chunk_name(array, coords), result
    return None


def _parse(path: Path) -> ValueError | None:
    """The error of parsing `path` as JSON, or None (also where the file is absent)."""
    try:
        json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return err
    return None


def _is_array(folder: Path) -> bool:
    if (folder / ".zarray").is_file():
        return True
    try:
        return json.loads((folder / "zarr.json").read_bytes()).get("node_type") == "array"
    except (OSError, ValueError, AttributeError):
        return False


def _folders(container: Path, dataset: str) -> Iterator[Path]:
    """The folders along `dataset`'s path and those just below it, then every group's.

    Array folders are not entered (their chunks are not metadata).
    """
    parts = [p for p in dataset.strip("/").split("/") if p]
    yield from (container.joinpath(*parts[:i]) for i in range(len(parts) + 1))
    target = container.joinpath(*parts)
    if target.is_dir() and not _is_array(target):  # a multiscale group's levels
        yield from sorted(p for p in target.iterdir() if p.is_dir())
    queue = [container]
    while queue:
        folder = queue.pop(0)
        yield folder
        if folder.is_dir() and not _is_array(folder):
            queue += sorted(p for p in folder.iterdir() if p.is_dir())


def unparsable_metadata(container: Path, dataset: str = "") -> tuple[Path, ValueError] | None:
    """The first zarr metadata file under `container` that is not JSON, with its error.

    The files along `dataset`'s path are read first (those zarr read to open
    it), then those of every group and array below the container. Meant for the
    path where opening failed with a JSON error that names no file.
    """
    seen: set[Path] = set()
    for folder in _folders(container, dataset):
        if folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        for name in METADATA_FILES:
            err = _parse(folder / name)
            if err is not None:
                return folder / name, err
    return None


def not_json(container: Path, dataset: str, err: ValueError) -> str:
    """The one-line message for metadata under `container` that did not parse (`err`)."""
    found = unparsable_metadata(container, dataset)
    where, err = (str(found[0]), found[1]) if found else (f"{container}:{dataset}", err)
    reason = " ".join(f"{type(err).__name__}: {err}".split())
    return (
        f"{where}: zarr metadata is not valid JSON ({reason}); restore the file "
        "(or rewrite the array)"
    )
