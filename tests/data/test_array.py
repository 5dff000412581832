"""Zarr arrays in world units: OME-NGFF metadata, scale levels, crops at known ROIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.ome import ScaleLevel, multiscale_attrs, parse_multiscale
from dacapo_hydra.data.roi import Roi
from tests.data.helpers import memory_array


def _write_multiscale(path: Path, version: str, zarr_format: int, unit: str = "nanometer") -> None:
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group = root.create_group("raw")
    data = np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16)
    group.create_array("s0", shape=data.shape, chunks=(8, 8, 8), dtype=data.dtype)[...] = data
    group.create_array("s1", shape=(8, 8, 8), chunks=(8, 8, 8), dtype=data.dtype)[...] = data[
        ::2, ::2, ::2
    ]
    levels = [ScaleLevel("s0", (40.0, 8.0, 8.0), (400.0, 80.0, 16.0))]
    levels.append(ScaleLevel("s1", (80.0, 16.0, 16.0), (400.0, 80.0, 16.0)))
    attrs = multiscale_attrs("raw", levels, version=version)
    if unit != "nanometer":
        entries = attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"]
        for axis in entries[0]["axes"]:
            axis["unit"] = unit
        for ds in entries[0]["datasets"]:
            for t in ds["coordinateTransformations"]:
                key = t["type"]
                t[key] = [v / 1000 for v in t[key]]
    group.attrs.update(attrs)


@pytest.mark.parametrize(("version", "zarr_format"), [("0.5", 3), ("0.4", 2)])
def test_ome_ngff_metadata_round_trips(tmp_path: Path, version: str, zarr_format: int) -> None:
    path = tmp_path / "ome.zarr"
    _write_multiscale(path, version, zarr_format)
    s0 = ZarrArray.open(path, "raw")
    assert s0.voxel_size == (40.0, 8.0, 8.0)
    assert s0.offset == (400.0, 80.0, 16.0)
    assert s0.roi == Roi((400.0, 80.0, 16.0), (640.0, 128.0, 128.0))
    s1 = ZarrArray.open(path, "raw", scale_voxel_size=[80, 16, 16])
    assert s1.voxel_size == (80.0, 16.0, 16.0) and s1.spatial_shape == (8, 8, 8)
    # The array itself (raw/s0) finds its metadata on the parent group.
    assert ZarrArray.open(path, "raw/s1").voxel_size == (80.0, 16.0, 16.0)
    parsed = parse_multiscale(zarr.open_group(str(path / "raw")).attrs.asdict(), "raw")
    assert parsed is not None and parsed.axes == ("z", "y", "x")


def test_micrometer_units_become_nanometres(tmp_path: Path) -> None:
    path = tmp_path / "um.zarr"
    _write_multiscale(path, "0.5", 3, unit="micrometer")
    s0 = ZarrArray.open(path, "raw")
    np.testing.assert_allclose(s0.voxel_size, (40.0, 8.0, 8.0))
    np.testing.assert_allclose(s0.offset, (400.0, 80.0, 16.0))


def test_missing_scale_level_names_the_levels(tmp_path: Path) -> None:
    path = tmp_path / "ome.zarr"
    _write_multiscale(path, "0.5", 3)
    with pytest.raises(ValueError, match=r"no scale level has voxel size \(4.0, 4.0, 4.0\)"):
        ZarrArray.open(path, "raw", scale_voxel_size=[4, 4, 4])


def test_yaml_voxel_size_and_offset_stand_in_for_metadata(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    root.create_array("img", shape=(10, 10), chunks=(5, 5), dtype="uint8")[...] = 7
    with pytest.raises(ValueError, match="give voxel_size"):
        ZarrArray.open(tmp_path / "plain.zarr", "img")
    array = ZarrArray.open(tmp_path / "plain.zarr", "img", voxel_size=[4, 4], offset=[8, 12])
    assert array.roi == Roi((8.0, 12.0), (40.0, 40.0))


def test_read_at_world_roi_raw_and_finer_gt() -> None:
    raw_data = np.arange(12 * 12).reshape(12, 12).astype(np.uint16)
    raw = memory_array(raw_data, (8.0, 8.0), (80.0, 40.0))
    # gt twice as fine, covering the same box: gt voxel (i, j) lies in raw voxel (i//2, j//2).
    gt = memory_array(np.repeat(np.repeat(raw_data, 2, 0), 2, 1), (4.0, 4.0), (80.0, 40.0))
    roi = Roi((80.0 + 3 * 8, 40.0 + 5 * 8), (16.0, 24.0))
    np.testing.assert_array_equal(raw.read(roi), raw_data[3:5, 5:8])
    fine = gt.read(roi)
    assert fine.shape == (4, 6)
    np.testing.assert_array_equal(fine[::2, ::2], raw_data[3:5, 5:8])
    with pytest.raises(ValueError, match="not aligned"):
        raw.read(Roi((84.0, 40.0), (8.0, 8.0)))
    with pytest.raises(ValueError, match="outside"):
        raw.read(Roi((0.0, 0.0), (8.0, 8.0)))


def test_read_padded_modes() -> None:
    data = np.arange(1, 5, dtype=np.uint8)[None].repeat(4, 0)  # columns 1..4
    array = memory_array(data, (2.0, 2.0))
    roi = Roi((0.0, -4.0), (8.0, 8.0))  # two voxels left of the array
    np.testing.assert_array_equal(array.read_padded(roi, "constant", 9)[0], [9, 9, 1, 2])
    np.testing.assert_array_equal(array.read_padded(roi, "reflect")[0], [3, 2, 1, 2])
    np.testing.assert_array_equal(array.read_padded(roi, "edge")[0], [1, 1, 1, 2])


def test_missing_container_and_dataset_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.zarr"):
        ZarrArray.open(tmp_path / "nope.zarr", "raw")
    zarr.open_group(str(tmp_path / "a.zarr"), mode="w").create_array(
        "raw", shape=(4, 4), dtype="uint8"
    )
    with pytest.raises(KeyError, match="'labels' not found.*it holds: raw"):
        ZarrArray.open(tmp_path / "a.zarr", "labels", voxel_size=[1, 1])
