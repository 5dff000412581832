"""The crop sampler reads crops lazily, at the right world position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from omegaconf import OmegaConf
from scipy import ndimage
from zarr.storage import LocalStore, LoggingStore

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.augment import build_augment
from dacapo_hydra.data.datamodule import TrainCrops
from dacapo_hydra.data.datasplit import Dataset, DataSplit, Sampling
from dacapo_hydra.data.deform import Deformation, Warp
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.sampler import CropSampler, CropShapes
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.training.build import TaskTargets
from tests.data.helpers import memory_array


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
    split = DataSplit(
        3, [Dataset("big", raw, gt, None, 1.0)], [], Normalizer("minmax", 0.0, 255.0), "reflect"
    )
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
    split = DataSplit(
        3, [Dataset("small", raw, gt, None, 1.0)], [], Normalizer.identity(), "constant"
    )
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


# --- voxel sizes, strategies, reproducibility, warps -------------------------------------


def _blocks(shape: tuple[int, ...], size: int) -> np.ndarray:
    """Label ids 1.. in blocks of `size` voxels: a checkerboard of objects."""
    grids = np.meshgrid(*[np.arange(s) // size for s in shape], indexing="ij")
    ids = np.zeros(shape, np.int64)
    for g in grids:
        ids = ids * 97 + g
    return (ids % 11 + 1).astype(np.uint64)


def _split(datasets: list[Dataset], strategy: str = "uniform", **kw: float) -> DataSplit:
    return DataSplit(
        len(datasets[0].raw.voxel_size),
        datasets,
        [],
        Normalizer.identity(),
        "reflect",
        Sampling(strategy, **kw),
    )


def test_super_resolution_crop_holds_raw_and_finer_gt() -> None:
    raw_data = np.arange(16 * 16).reshape(16, 16).astype(np.float32)
    raw = memory_array(raw_data, (8.0, 8.0), (80.0, 160.0))
    gt_data = np.repeat(np.repeat(raw_data, 2, 0), 2, 1).astype(np.uint64)
    gt = memory_array(gt_data, (4.0, 4.0), (80.0, 160.0))
    split = _split([Dataset("sr", raw, gt, None, 1.0)])
    # 6 raw voxels (48 nm) in, 8 gt voxels (32 nm) out: 8 nm of context each side.
    shapes = CropShapes((6, 6), (8, 8), (8.0, 8.0), (4.0, 4.0))
    sampler = CropSampler(split.train, split, shapes)
    roi = Roi((80.0 + 3 * 8, 160.0 + 5 * 8), (32.0, 32.0))
    crop = sampler.read(split.train[0], roi)
    np.testing.assert_array_equal(crop["raw"][0], raw_data[2:8, 4:10])
    np.testing.assert_array_equal(crop["gt"][0], gt_data[6:14, 10:18])
    rng = np.random.default_rng(0)
    for _ in range(30):
        r = sampler.random_roi(split.train[0], rng)
        sampler.read(split.train[0], r)  # raises if off either grid
        assert np.allclose((np.subtract(r.begin, (80.0, 160.0)) - 8.0) % 8.0, 0)


def test_gt_voxel_size_must_match_network_output() -> None:
    raw = memory_array(np.zeros((16, 16), np.uint8), (8.0, 8.0))
    gt = memory_array(np.zeros((32, 32), np.uint64), (4.0, 4.0))
    split = _split([Dataset("sr", raw, gt, None, 1.0)])
    with pytest.raises(ValueError, match=r"gt voxel size \(4.0, 4.0\).*output voxel size"):
        CropSampler(split.train, split, CropShapes((6, 6), (4, 4), (8.0, 8.0)))


def test_crop_larger_than_labelled_region_is_named() -> None:
    raw = memory_array(np.zeros((16, 16), np.uint8), (8.0, 8.0), where="vol.zarr:raw")
    gt = memory_array(np.zeros((4, 4), np.uint64), (8.0, 8.0), where="vol.zarr:gt")
    split = _split([Dataset("small", raw, gt, None, 1.0)])
    with pytest.raises(ValueError, match=r"larger than the labelled region.*vol.zarr:gt"):
        CropSampler(split.train, split, CropShapes((10, 10), (6, 6), (8.0, 8.0)))


def test_reject_and_integral_mask_respect_the_mask() -> None:
    shape = (64, 64)
    mask_data = np.zeros(shape, np.uint8)
    mask_data[:, :20] = 1
    mask_data[40:50, 40:50] = 1
    raw = memory_array(np.zeros(shape, np.uint8), (4.0, 4.0))
    gt = memory_array(np.zeros(shape, np.uint64), (4.0, 4.0))
    mask = memory_array(mask_data, (4.0, 4.0))
    shapes = CropShapes((12, 12), (8, 8), (4.0, 4.0))
    rng = np.random.default_rng(0)
    reject = _split([Dataset("d", raw, gt, mask, 1.0)], "reject", min_masked=0.75)
    sampler = CropSampler(reject.train, reject, shapes)
    fractions = [sampler.sample(rng)["mask"].mean() for _ in range(100)]
    assert min(fractions) >= 0.75
    uniform = CropSampler(reject.train, _split([Dataset("d", raw, gt, mask, 1.0)]), shapes)
    assert min(uniform.sample(rng)["mask"].mean() for _ in range(100)) < 0.75
    integral = _split([Dataset("d", raw, gt, mask, 1.0)], "integral_mask")
    sampler = CropSampler(integral.train, integral, shapes)
    for _ in range(100):
        crop = sampler.sample(rng)
        assert crop["mask"][0, 4, 4] == 1
    impossible = _split([Dataset("d", raw, gt, mask, 1.0)], "reject", min_masked=1.0, max_tries=5)
    mask_empty = memory_array(np.zeros(shape, np.uint8), (4.0, 4.0), where="m.zarr:mask")
    impossible.train[0].mask = mask_empty
    with pytest.raises(RuntimeError, match=r"'reject' rule .* m.zarr:mask"):
        CropSampler(impossible.train, impossible, shapes).sample(rng)


def test_points_strategy_crops_hold_a_point_and_weights_choose_datasets() -> None:
    shape = (64, 64)
    raw = memory_array(np.zeros(shape, np.uint8), (4.0, 4.0), (100.0, 0.0))
    gt = memory_array(np.zeros(shape, np.uint64), (4.0, 4.0), (100.0, 0.0))
    points = [(150.0, 30.0), (300.0, 250.0), (102.0, 254.0)]  # the last sits in a corner
    split = _split(
        [Dataset("a", raw, gt, None, 3.0, points), Dataset("b", raw, gt, None, 1.0, points)],
        "points",
    )
    sampler = CropSampler(split.train, split, CropShapes((12, 12), (8, 8), (4.0, 4.0)))
    rng = np.random.default_rng(0)
    chosen = []
    for _ in range(400):
        dataset, roi = sampler.draw(rng)
        chosen.append(dataset.name)
        assert gt.roi.contains(roi)
        assert any(
            all(b <= p < e for p, b, e in zip(pt, roi.begin, roi.end, strict=True)) for pt in points
        )
    assert 0.68 < chosen.count("a") / len(chosen) < 0.82


def _aligned_volume(dims: int = 3) -> tuple[DataSplit, CropShapes]:
    shape = (40,) * dims
    labels = _blocks(shape, 5)
    raw = memory_array((labels * 20).astype(np.uint8), (8.0,) * dims, (0.0,) * dims, chunk=16)
    gt = memory_array(labels, (8.0,) * dims, (0.0,) * dims, chunk=16)
    split = DataSplit(
        dims, [Dataset("v", raw, gt, None, 1.0)], [], Normalizer.identity(), "reflect"
    )
    return split, CropShapes((20,) * dims, (12,) * dims, (8.0,) * dims)


def test_identity_warp_reads_exactly_what_a_plain_read_does() -> None:
    split, shapes = _aligned_volume()
    sampler = CropSampler(split.train, split, shapes)
    dataset = split.train[0]
    roi = sampler.random_roi(dataset, np.random.default_rng(3))
    raw_roi = roi.grow(shapes.context)
    warp = Warp(
        centre=np.asarray(raw_roi.center),
        matrix=np.eye(3),
        grid_begin=np.asarray(raw_roi.begin),
        grid_step=np.asarray(raw_roi.shape) / 2,
        field=np.zeros((3, 3, 3, 3), np.float32),
    )
    plain, warped = sampler.read(dataset, roi), sampler.read(dataset, roi, warp)
    np.testing.assert_allclose(warped["raw"], plain["raw"], atol=1e-3)
    np.testing.assert_array_equal(warped["gt"], plain["gt"])
    np.testing.assert_array_equal(warped["mask"], plain["mask"])


@pytest.mark.parametrize("dims", [2, 3])
def test_augmented_labels_match_augmented_raw(dims: int) -> None:
    """After elastic + rotation + mirror/transpose, raw (= 20 x label) still shows the labels."""
    split, shapes = _aligned_volume(dims)
    deformation = Deformation(
        dims, 40.0, 12.0, rotation_max=90, rotation_planes="all", elastic_prob=1, rotation_prob=1
    )
    sampler = CropSampler(split.train, split, shapes, deformation)
    augment = build_augment(
        OmegaConf.create(
            {
                "mirror_prob": 0.5,
                "transpose_prob": 0.5,
                "intensity_prob": 0.0,
                "intensity_scale": 0.0,
                "intensity_shift": 0.0,
            }
        ),
        dims,
        shapes.input_shape,
        shapes.output_shape,
        shapes.voxel_size,
    )
    augment.set_random_state(seed=0)
    rng = np.random.default_rng(0)
    ctx = (shapes.input_shape[0] - shapes.output_shape[0]) // 2
    inner = (slice(ctx, -ctx),) * dims
    agree, total, changed = 0, 0, 0
    for _ in range(6):
        dataset, roi = sampler.draw(rng)
        warp = deformation.sample(rng, roi.grow(shapes.context), dataset.raw.voxel_size)
        warped = sampler.read(dataset, roi, warp)
        changed += not np.array_equal(warped["gt"], sampler.read(dataset, roi)["gt"])
        crop = {k: np.asarray(v) for k, v in augment(warped).items()}
        raw, gt, mask = crop["raw"][0][inner], crop["gt"][0], crop["mask"][0]
        # Away from label boundaries bilinear raw equals 20 x label exactly.
        interior = (ndimage.maximum_filter(gt, 3) == ndimage.minimum_filter(gt, 3)) & (mask > 0)
        agree += int((np.round(raw[interior] / 20) == gt[interior]).sum())
        total += int(interior.sum())
    assert total > 0.05 * 6 * 12**dims  # blocks of 5 voxels: ~20% lie 1 voxel from an edge
    assert agree / total > 0.99
    assert changed == 6


def test_seed_makes_the_batch_sequence_reproducible() -> None:
    split, shapes = _aligned_volume(2)
    deformation = Deformation(2, 40.0, 12.0, elastic_prob=0.5)

    def first(seed: int) -> list[np.ndarray]:
        augment = build_augment(
            OmegaConf.create(
                {
                    "mirror_prob": 0.5,
                    "transpose_prob": 0.5,
                    "intensity_prob": 0.5,
                    "intensity_scale": 0.1,
                    "intensity_shift": 0.1,
                }
            ),
            2,
            shapes.input_shape,
            shapes.output_shape,
            shapes.voxel_size,
        )
        sampler = CropSampler(split.train, split, shapes, deformation)
        stream = iter(TrainCrops(sampler, TaskTargets(DistanceTask(2, (8.0, 8.0))), augment, seed))
        return [next(stream)["raw"].numpy() for _ in range(4)]

    a, b, c = first(1), first(1), first(2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_nan_in_a_crop_names_the_array_and_roi() -> None:
    data = np.ones((32, 32), np.float32)
    data[20:, 20:] = np.nan
    raw = memory_array(data, (4.0, 4.0), where="em.zarr:raw")
    gt = memory_array(np.ones((32, 32), np.uint64), (4.0, 4.0))
    split = _split([Dataset("d", raw, gt, None, 1.0)])
    sampler = CropSampler(split.train, split, CropShapes((8, 8), (4, 4), (4.0, 4.0)))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"raw em.zarr:raw holds NaN in \["):
        for _ in range(50):
            sampler.sample(rng)
