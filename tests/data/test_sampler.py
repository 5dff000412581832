"""The crop sampler reads crops lazily, at the right world position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore, LoggingStore

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.sampler import CropSampler, CropShapes


def _write_volume(
    path: Path, shape: tuple[int, ...], chunk: int, offset: tuple[float, ...]
) -> None:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    raw = root.create_array("raw", shape=shape, chunks=(chunk,) * len(shape), dtype="uint8")
    gt = root.create_array("gt", shape=shape, chunks=(chunk,) * len(shape), dtype="uint64")
    # Each voxel's value encodes its index, so a crop's position is checkable.
    index = np.arange(np.prod(shape)).reshape(shape)
    raw[...] = (index % 251).astype(np.uint8)
    gt[...] = index.astype(np.uint64)
    for name in ("raw", "gt"):
        root[name].attrs["voxel_size"] = [4.0] * len(shape)
        root[name].attrs["offset"] = list(offset)


def test_sampler_reads_only_the_chunks_a_crop_touches(tmp_path: Path) -> None:
    path = tmp_path / "big.zarr"
    shape, chunk = (128, 128, 128), 16
    _write_volume(path, shape, chunk, offset=(40.0, 80.0, 120.0))
    logging_store = LoggingStore(LocalStore(str(path), read_only=True))
    raw = ZarrArray(
        zarr.open_array(logging_store, path="raw"), (4.0,) * 3, (40.0, 80.0, 120.0), "raw"
    )
    gt = ZarrArray(zarr.open_array(logging_store, path="gt"), (4.0,) * 3, (40.0, 80.0, 120.0), "gt")
    split = DataSplit(3, [Dataset("big", raw, gt, None, 1.0)], [], 0.0, 255.0, "reflect")
    shapes = CropShapes((24, 24, 24), (8, 8, 8), (4.0, 4.0, 4.0))
    sampler = CropSampler(split.train, split, shapes)
    rng = np.random.default_rng(0)
    logging_store.counter.clear()
    samples = [sampler.sample(rng) for _ in range(5)]
    chunk_reads = logging_store.counter["get"]
    total_chunks = 2 * (128 // chunk) ** 3
    # A 24^3 raw crop touches at most 3^3 chunks of 16^3, an 8^3 gt crop at most 2^3.
    assert chunk_reads <= 5 * (27 + 8) + 4  # +4: array metadata documents
    assert chunk_reads < total_chunks / 10
    assert samples[0]["raw"].shape == (1, 24, 24, 24)
    assert samples[0]["gt"].shape == (1, 8, 8, 8)


def test_crop_at_known_world_roi(tmp_path: Path) -> None:
    path = tmp_path / "small.zarr"
    shape = (20, 20, 20)
    offset = (40.0, 80.0, 120.0)
    _write_volume(path, shape, 8, offset)
    raw = ZarrArray.open(path, "raw")
    gt = ZarrArray.open(path, "gt")
    split = DataSplit(3, [Dataset("small", raw, gt, None, 1.0)], [], 0.0, 1.0, "constant")
    shapes = CropShapes((6, 6, 6), (2, 2, 2), (4.0, 4.0, 4.0))
    sampler = CropSampler(split.train, split, shapes)

    # gt crop at voxels [5:7, 6:8, 7:9]; raw crop with 2 voxels of context each side.
    roi = Roi((40.0 + 5 * 4, 80.0 + 6 * 4, 120.0 + 7 * 4), (8.0, 8.0, 8.0))
    crop = sampler.read(split.train[0], roi)
    index = np.arange(np.prod(shape)).reshape(shape)
    np.testing.assert_array_equal(crop["gt"][0], index[5:7, 6:8, 7:9])
    np.testing.assert_array_equal(crop["raw"][0], (index[3:9, 4:10, 5:11] % 251).astype(np.float32))
    # Random ROIs stay on the gt grid and inside the array.
    rng = np.random.default_rng(1)
    for _ in range(50):
        r = sampler.random_roi(split.train[0], rng)
        assert gt.roi.contains(r)
        assert np.allclose((np.subtract(r.begin, offset) / 4.0) % 1, 0)
