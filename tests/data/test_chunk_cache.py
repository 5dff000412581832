"""Decoded chunks kept between reads: same values as zarr, fewer store reads, a byte budget."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from zarr.storage import LocalStore, LoggingStore, MemoryStore

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.chunk_cache import ChunkCache
from dacapo_hydra.data.datamodule import VolumeDataModule
from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.deform import Deformation
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.sampler import CropSampler, CropShapes
from dacapo_hydra.data.transforms import BinarizeArray
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.training.build import TaskTargets
from tests.data.helpers import volume_config, write_volume


def _stored(data: np.ndarray, chunks: tuple[int, ...]) -> zarr.Array:
    array = zarr.create_array(MemoryStore(), shape=data.shape, chunks=chunks, dtype=data.dtype)
    array[...] = data
    return array


@st.composite
def reads(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...], list[tuple[slice, ...]], int]:
    """An array of 1 to 3 axes, its chunks, boxes to read in turn, and a budget in bytes."""
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 9)) for _ in range(dims))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)
    boxes = []
    for _ in range(draw(st.integers(1, 5))):
        box = []
        for n in shape:
            lo = draw(st.integers(0, n - 1))
            box.append(slice(lo, draw(st.integers(lo + 1, n))))
        boxes.append(tuple(box))
    budget = draw(st.sampled_from([0, 8, 64, 2**20]))
    data = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    return data, chunks, boxes, budget


@settings(max_examples=60, deadline=None)
@given(reads())
def test_a_cached_read_equals_the_arrays_values_within_the_budget(
    case: tuple[np.ndarray, tuple[int, ...], list[tuple[slice, ...]], int],
) -> None:
    data, chunks, boxes, budget = case
    array = _stored(data, chunks)
    cache = ChunkCache(budget)
    for box in boxes + boxes:  # each box twice: the second time from what is kept
        out = cache.read(array, box)
        np.testing.assert_array_equal(out, data[box])
        out[...] = -1  # the caller's own copy: what is kept is untouched
        assert cache.info()["bytes"] <= budget


def test_a_second_read_of_a_region_reads_nothing_from_the_store(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, (40, 40, 40), dtype=np.uint8)
    zarr.create_array(str(tmp_path / "a.zarr"), data=data, chunks=(16, 16, 16))
    store = LoggingStore(LocalStore(str(tmp_path / "a.zarr"), read_only=True))
    array = zarr.open_array(store)
    store.counter.clear()  # metadata read when opening
    cache = ChunkCache(2**20)
    box = (slice(5, 30), slice(0, 17), slice(20, 40))
    np.testing.assert_array_equal(cache.read(array, box), data[box])
    first = store.counter["get"]
    assert first == 2 * 2 * 2  # only the chunks the box touches
    store.counter.clear()
    inside = (slice(6, 20), slice(1, 16), slice(33, 40))
    np.testing.assert_array_equal(cache.read(array, inside), data[inside])
    assert store.counter["get"] == 0
    # chunks at the array edge hold what is there: 16, 16 and 8 voxels along x
    assert cache.info() == {"chunks": 8, "bytes": 32 * 32 * 24, "hits": 2, "misses": 8}


def test_least_recently_used_chunks_go_first() -> None:
    data = np.arange(64, dtype=np.uint8).reshape(8, 8)
    array = _stored(data, (4, 4))
    cache = ChunkCache(3 * 16)  # three chunks of 16 bytes
    for box in [(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)), (slice(4, 8), slice(0, 4))]:
        cache.read(array, box)
    cache.read(array, (slice(0, 4), slice(0, 4)))  # the first one, used again
    cache.read(array, (slice(4, 8), slice(4, 8)))  # a fourth: the second one goes
    hits = cache.info()["hits"]
    cache.read(array, (slice(0, 4), slice(0, 4)))
    assert cache.info()["hits"] == hits + 1
    cache.read(array, (slice(0, 4), slice(4, 8)))
    assert cache.info()["hits"] == hits + 1  # gone, read again
    assert cache.info()["bytes"] <= 3 * 16


def test_a_read_larger_than_the_budget_reads_through() -> None:
    data = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cache = ChunkCache(20)
    np.testing.assert_array_equal(cache.read(_stored(data, (4, 4)), (slice(0, 8),) * 2), data)
    assert cache.info()["chunks"] == 0


def test_a_copy_in_another_process_starts_empty() -> None:
    cache = ChunkCache(1000)
    cache.read(_stored(np.ones((4, 4), np.uint8), (2, 2)), (slice(0, 4), slice(0, 4)))
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.max_bytes == 1000
    assert copy.info() == {"chunks": 0, "bytes": 0, "hits": 0, "misses": 0}
    with pytest.raises(ValueError, match="chunk cache size must be >= 0 bytes, got -1"):
        ChunkCache(-1)


def test_the_sampler_caches_every_zarr_array_behind_its_datasets(tmp_path: Path) -> None:
    """Through transforms too; warped crops are the same with and without the cache."""
    path = write_volume(tmp_path / "v.zarr", (32, 32, 32), chunk=8)
    crops = []
    for cache in (None, ChunkCache(2**24)):
        raw = ZarrArray.open(path, "raw")
        gt = BinarizeArray(ZarrArray.open(path, "gt"), groups={"a": [1]})
        split = DataSplit(
            3, [Dataset("v", raw, gt, None, 1.0)], [], Normalizer("minmax", 0.0, 50.0), "reflect"
        )
        warp = Deformation(3, 48.0, 8.0, rotation_max=30.0, elastic_prob=1.0, rotation_prob=1.0)
        shapes = CropShapes((12,) * 3, (6,) * 3, (8.0,) * 3)
        sampler = CropSampler(split.train, split, shapes, warp, cache)
        within = (*raw.arrays_within(), *gt.arrays_within())
        leaves = [a for a in within if isinstance(a, ZarrArray)]
        assert len(leaves) == 2 and all(a.cache is cache for a in leaves)
        rng = np.random.default_rng(3)
        crops.append([sampler.sample(rng) for _ in range(4)])
        if cache is not None:
            assert cache.info()["hits"] > 0
    for plain, cached in zip(*crops, strict=True):
        for key in ("raw", "gt", "mask"):
            np.testing.assert_array_equal(plain[key], cached[key])


def test_a_negative_cache_size_is_refused_by_its_key(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "v.zarr", (32, 32))
    split = DataSplit.from_config(volume_config(path, dims=2))
    shapes = CropShapes((12, 12), (8, 8), (8.0, 8.0))
    off = {"mirror_prob": 0, "transpose_prob": 0, "intensity_prob": 0, "intensity_scale": 0}
    trainer = OmegaConf.create(
        {"batch_size": 1, "num_workers": 0, "chunk_cache_mb": -1, "augment": off}
    )
    targets = TaskTargets(DistanceTask(2, (8.0, 8.0)))
    with pytest.raises(ValueError, match=r"trainer.chunk_cache_mb=-1: expected the MiB"):
        VolumeDataModule.build(split, shapes, targets, trainer, seed=0, validation_samples=0)
