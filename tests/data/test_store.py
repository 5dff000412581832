"""Chunk keys from zarr's metadata match what zarr stores; broken metadata files are found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.core.sync import collect_aiterator
from zarr.storage import MemoryStore

from dacapo_hydra.data.store import (
    METADATA_FILES,
    chunk_boxes,
    full_box,
    present_keys,
    stored_keys,
    undecodable_chunk,
    unparsable_metadata,
)

# (zarr format, chunk key encoding, sharded): every key layout zarr writes.
LAYOUTS = [
    (3, None, False),
    (3, None, True),
    (3, {"name": "default", "separator": "."}, False),
    (3, {"name": "v2", "separator": "."}, False),
    (2, None, False),
    (2, {"name": "v2", "separator": "/"}, False),
]


@st.composite
def arrays_and_boxes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], Any, tuple]:
    """A shape, a chunk shape, a key layout and a box inside the shape."""
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(dims))
    chunks = tuple(draw(st.integers(1, 5)) for _ in range(dims))
    layout = draw(st.sampled_from(LAYOUTS))
    box = []
    for n in shape:
        start = draw(st.integers(0, n - 1))
        box.append(slice(start, draw(st.integers(start + 1, n))))
    return shape, chunks, layout, tuple(box)


def _create(shape: tuple[int, ...], chunks: tuple[int, ...], layout: Any) -> zarr.Array:
    zarr_format, encoding, sharded = layout
    extra: dict[str, Any] = {}
    if encoding:
        extra["chunk_key_encoding"] = encoding
    if sharded:
        extra["shards"] = tuple(2 * c for c in chunks)
    return zarr.create_array(
        MemoryStore(),
        shape=shape,
        chunks=chunks,
        dtype="uint8",
        fill_value=0,
        zarr_format=zarr_format,
        **extra,
    )


@settings(max_examples=60, deadline=None)
@given(arrays_and_boxes())
def test_stored_keys_are_the_keys_zarr_writes(case: tuple) -> None:
    shape, chunks, layout, box = case
    array = _create(shape, chunks, layout)
    data = np.zeros(shape, np.uint8)
    data[box] = 1
    array[...] = data  # zarr writes exactly the chunks (shards) that hold a nonzero voxel
    store = array.store_path.store
    written = {k for k in collect_aiterator(store.list_prefix("")) if k not in METADATA_FILES}
    assert set(stored_keys(array, box)) == written
    # Asked of the whole grid (listed) or of the box (listed or asked key by key).
    assert present_keys(array, stored_keys(array)) == written
    assert present_keys(array, stored_keys(array, box)) == written
    # The chunks (zarr's read units) of the box cover it, each inside the array.
    covered = np.zeros(shape, bool)
    for _, chunk in chunk_boxes(array, box):
        covered[chunk] = True
    assert covered[box].all()


def test_an_array_inside_a_group_lists_only_its_own_keys() -> None:
    root = zarr.open_group(MemoryStore(), mode="w")
    a = root.create_array("a", shape=(4,), chunks=(2,), dtype="uint8")
    b = root.create_array("ab", shape=(4,), chunks=(2,), dtype="uint8")
    b[...] = 1
    a[:2] = 1
    assert present_keys(a, stored_keys(a)) == {"c/0"}
    assert present_keys(b, ["c/0", "c/1", "c/7"]) == {"c/0", "c/1"}


def test_an_undecodable_chunk_is_named(tmp_path: Path) -> None:
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(6, 6), chunks=(2, 3), dtype="f4")
    array[...] = 1.0
    chunk = tmp_path / "a.zarr" / "c" / "2" / "1"
    chunk.write_bytes(chunk.read_bytes()[:5])
    found = undecodable_chunk(array, full_box(array.shape))
    assert found is not None and found[0] == "c/2/1"
    assert undecodable_chunk(array, full_box(array.shape, (slice(0, 4), slice(None)))) is None


def test_the_metadata_file_that_is_not_json_is_found(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "c.zarr"), mode="w")
    root.create_group("g").create_array("a", shape=(2,), chunks=(1,), dtype="uint8")[...] = 1
    root.create_array("b", shape=(2,), chunks=(1,), dtype="uint8")
    assert unparsable_metadata(tmp_path / "c.zarr", "g/a") is None
    broken = tmp_path / "c.zarr" / "g" / "a" / "zarr.json"
    broken.write_bytes(b"\xff\xfe not text")
    found = unparsable_metadata(tmp_path / "c.zarr", "b")  # off the path: found by the walk
    assert found is not None and found[0] == broken
