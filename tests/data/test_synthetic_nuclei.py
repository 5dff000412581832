"""Synthetic light-microscopy nuclei: crowded, touching, uint16, physically sized, usable."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage
from skimage.filters import threshold_otsu

from dacapo_hydra.api import compose
from dacapo_hydra.cli import synthetic_main as main
from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.tools.synthetic import PARAMS_KEY, ensure_synthetic
from dacapo_hydra.data.tools.synthetic_nuclei import generate_nuclei

SHAPES = {2: (256, 256), 3: (32, 160, 160)}
COUNTS = {2: (50, 80), 3: (30, 60)}


@cache
def default(dims: int) -> dict[str, np.ndarray]:
    return generate_nuclei(SHAPES[dims], seed=0)


def touching_ids(labels: np.ndarray) -> set[int]:
    """Ids of nuclei that share a face with another nucleus."""
    ids: set[int] = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1], a[1:]
        contact = (lo != hi) & (lo > 0) & (hi > 0)
        ids |= set(np.unique(lo[contact]).tolist()) | set(np.unique(hi[contact]).tolist())
    return ids


def test_same_seed_same_image() -> None:
    a = generate_nuclei((64, 64), seed=5)
    b = generate_nuclei((64, 64), seed=5)
    c = generate_nuclei((64, 64), seed=6)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["labels"], c["labels"])


@pytest.mark.parametrize("dims", [2, 3])
def test_defaults_are_crowded_uint16_nuclei(dims: int) -> None:
    v = default(dims)
    raw, labels = v["raw"], v["labels"]
    assert raw.shape == labels.shape == v["mask"].shape == SHAPES[dims]
    assert raw.dtype == np.uint16 and labels.dtype == np.uint64 and v["mask"].dtype == np.uint8
    assert (v["mask"] == 1).all()
    assert raw.max() > 2000 and np.percentile(raw[labels > 0], 50) > 1000
    assert raw[labels > 0].mean() > 4 * raw[labels == 0].mean()  # bright nuclei, dark background
    n = int(labels.max())
    assert np.array_equal(np.unique(labels), np.arange(n + 1))  # ids 1..n, no gaps
    lo, hi = COUNTS[dims]
    assert lo <= n <= hi
    assert len(touching_ids(labels)) >= 0.2 * n
    border = np.zeros(labels.shape, bool)
    for axis in range(dims):
        border[(slice(None),) * axis + (0,)] = border[(slice(None),) * axis + (-1,)] = True
    assert len(np.unique(labels[border])) > 3  # some nuclei are cut by the border


@pytest.mark.parametrize("dims", [2, 3])
def test_every_nucleus_is_one_connected_component(dims: int) -> None:
    labels = default(dims)["labels"]
    for i, region in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        assert region is not None
        _, pieces = ndimage.label(labels[region] == i)
        assert pieces == 1, i


@pytest.mark.parametrize("dims", [2, 3])
def test_otsu_threshold_merges_touching_nuclei(dims: int) -> None:
    # The point of the data: a global threshold + connected components undercounts.
    v = default(dims)
    _, found = ndimage.label(v["raw"] > threshold_otsu(v["raw"]))
    assert found < 0.75 * v["labels"].max()


def test_sizes_are_physical() -> None:
    # The same field at half the voxel size: the same nuclei, twice as many voxels across.
    coarse = generate_nuclei((128, 128), seed=2, voxel_size=(250, 250))["labels"]
    fine = generate_nuclei((256, 256), seed=2, voxel_size=(125, 125))["labels"]
    assert abs(int(fine.max()) - int(coarse.max())) <= 1

    def median_diameter(labels: np.ndarray) -> float:
        return float(np.sqrt(np.median(np.bincount(labels.ravel())[1:])))

    assert median_diameter(fine) / median_diameter(coarse) == pytest.approx(2.0, rel=0.1)


def test_z_is_coarser_in_3d() -> None:
    labels = default(3)["labels"]
    extents = np.array([[s.stop - s.start for s in r] for r in ndimage.find_objects(labels)])
    inner = (extents < np.asarray(SHAPES[3])).all(axis=1)
    # 1000 nm along z against 250 nm in-plane: a nucleus spans ~4x fewer voxels in z.
    ratio = np.median(extents[inner, 1:]) / np.median(extents[inner, 0])
    assert 2.5 < ratio < 6


def test_container_opens_through_the_datasplit(tmp_path: Path) -> None:
    cfg = compose(datasplit="nuclei_2d", overrides=[f"paths.data_dir={tmp_path}"])
    assert cfg.datasplit.synthetic.kind == "nuclei"
    split = DataSplit.from_config(cfg.datasplit)
    path = tmp_path / "nuclei_2d.zarr"
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs[PARAMS_KEY]["kind"] == "nuclei"
    for group in ("train", "validate"):
        assert sorted(root[group].group_keys()) == ["raw"]
        assert sorted(root[f"{group}/raw/labels"].group_keys()) == ["labels", "mask"]
    raw = ZarrArray.open(path, "train/raw")
    assert raw.voxel_size == (250.0, 250.0) and raw.spatial_shape == (256, 256)
    assert raw.dtype == np.uint16
    assert split.train[0].raw.voxel_size == (250.0, 250.0)
    assert split.train[0].gt.voxel_size == (250.0, 250.0)
    assert len(split.validate) == 1
    gt = zarr.open_group(str(path), mode="r")["train/raw/labels/labels/s0"][:]
    assert gt.max() >= COUNTS[2][0]


def test_kind_change_regenerates_and_cli_takes_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.zarr"
    ensure_synthetic(path, dims=2, shape=[48, 48], seed=1)
    assert "organelles" in zarr.open_group(str(path), mode="r")["train/raw/labels"]
    main(
        [
            "--output",
            str(path),
            "--kind",
            "nuclei",
            "--dims",
            "2",
            "--shape",
            "64",
            "64",
            "--seed",
            "1",
        ]
    )
    assert '"kind": "nuclei"' in capsys.readouterr().out
    root = zarr.open_group(str(path), mode="r")
    assert "organelles" not in root["train/raw/labels"]
    assert root["train/raw/s0"].dtype == np.uint16
    assert ZarrArray.open(path, "train/raw").voxel_size == (250.0, 250.0)
    with pytest.raises(ValueError, match="kind"):
        ensure_synthetic(path, kind="confocal")
