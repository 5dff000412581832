"""The fingerprint of a datasplit, measured on a zarr with known object sizes and anisotropy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.fingerprint import Fingerprint, axis_radii, measure

VOXEL = (40.0, 8.0, 8.0)
RADIUS = 160.0  # nm: 4 sections in z, 20 voxels in y and x


def _balls(shape: tuple[int, ...], centres: list[tuple[int, ...]]) -> np.ndarray:
    """Spheres of RADIUS nm (ellipsoids in voxels) labelled 1, 2, ..."""
    labels = np.zeros(shape, np.uint32)
    grid = np.indices(shape).astype(float)
    for i, centre in enumerate(centres, start=1):
        d2 = sum(((g - c) * v) ** 2 for g, c, v in zip(grid, centre, VOXEL, strict=True))
        labels[(d2 <= RADIUS**2) & (labels == 0)] = i
    return labels


def _container(path: Path) -> Path:
    shape = (16, 96, 96)
    labels = _balls(shape, [(8, 24, 24), (8, 24, 70), (8, 70, 48)])
    root = zarr.open_group(str(path), mode="w")
    values = {
        "raw": (labels > 0).astype(np.uint16) * 900 + 100,
        "gt": labels,
        "mask": np.ones(shape, np.uint8),
    }
    for name, data in values.items():
        array = root.create_array(name, shape=shape, chunks=(8, 32, 32), dtype=data.dtype)
        array[...] = data
        array.attrs.update({"voxel_size": list(VOXEL), "offset": [0.0] * 3})
    return path


def test_fingerprint_measures_radii_per_axis_anisotropy_and_extent(tmp_path: Path) -> None:
    path = _container(tmp_path / "balls.zarr")
    entry = {part: {"container": str(path), "dataset": part} for part in ("raw", "gt", "mask")}
    split = DataSplit.from_config(
        {
            "dims": 3,
            "train": [{"name": "t", **entry}],
            "validate": [],
            "normalize": {"mode": "minmax", "min": 0, "max": 1000},
        }
    )
    fp = measure(split)
    assert fp.voxel_size == VOXEL and fp.anisotropy == (5.0, 1.0, 1.0)
    assert fp.coarse_axes == (0,)
    assert fp.labelled_extent_voxels == (16, 96, 96)
    assert fp.labelled_extent_nm == (640.0, 768.0, 768.0)
    assert fp.objects == 3 and fp.sample_voxels == 16 * 96 * 96
    # The inscribed ball is bounded by the 40 nm sections: 4 of them are 160 nm only at
    # the centre line, so it is smaller than the nominal radius.
    assert fp.radius.p50 == pytest.approx(128.27, abs=0.01)
    # Semi-axes: the ball holds voxel centres within 160 nm, so its chords end half a
    # voxel beyond: 9 sections (180 nm) in z, 41 voxels (164 nm) in y and x.
    assert [s.p50 for s in fp.radius_per_axis] == [180.0, 164.0, 164.0]
    assert 0.05 < fp.foreground_fraction < 0.3 and fp.mask_coverage == 1.0
    assert fp.intensity == {"mode": "minmax", "lo": 0.0, "hi": 1000.0}
    assert set(fp.class_frequencies) == {"0", "1", "2", "3"}
    again = Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict())))
    assert again == fp


def test_sample_is_bounded(tmp_path: Path) -> None:
    path = _container(tmp_path / "balls.zarr")
    entry = {part: {"container": str(path), "dataset": part} for part in ("raw", "gt", "mask")}
    split = DataSplit.from_config(
        {
            "dims": 3,
            "train": [{"name": "t", **entry}],
            "validate": [],
            "normalize": {"mode": "minmax", "min": 0, "max": 1000},
        }
    )
    fp = measure(split, max_voxels=8 * 48 * 48)
    assert fp.sample_voxels <= 8 * 48 * 48 and fp.labelled_voxels == 16 * 96 * 96


def test_axis_radii_are_semi_axes_in_nm() -> None:
    labels = np.zeros((10, 30), np.uint32)
    labels[3:7, 5:25] = 1  # 4 x 20 voxels: 160 x 80 nm at 40 x 4 nm
    assert axis_radii(labels, (40.0, 4.0)).tolist() == [[80.0, 40.0]]
