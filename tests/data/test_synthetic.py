"""The synthetic generator: deterministic, OME-NGFF metadata, plausible content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.tools.synthetic import dataset_path, ensure_synthetic, generate_volume


def test_same_seed_same_volume() -> None:
    a = generate_volume((24, 32, 32), seed=3)
    b = generate_volume((24, 32, 32), seed=3)
    c = generate_volume((24, 32, 32), seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["raw"], c["raw"])


def test_volume_content_is_em_like() -> None:
    v = generate_volume((40, 40, 40), seed=0)
    assert v["raw"].dtype == np.uint8 and v["labels"].dtype == np.uint64
    annotated = v["mask"] == 1
    assert 0.5 < annotated.mean() < 1.0  # an unannotated slab
    assert (v["labels"][~annotated] == 0).all()
    assert len(np.unique(v["labels"])) > 5  # many cells
    membrane = annotated & (v["labels"] == 0)
    cells = v["labels"] > 0
    # Membranes are bright, organelles dark compared with cytoplasm.
    assert v["raw"][membrane].mean() > v["raw"][cells].mean() + 20
    organelle = v["organelles"] > 0
    assert organelle.any()
    assert v["raw"][organelle].mean() < v["raw"][cells & ~organelle].mean()


def test_container_layout_and_metadata(tmp_path: Path) -> None:
    path = ensure_synthetic(
        tmp_path / "s.zarr", dims=2, shape=[64, 48], voxel_size=[4, 4], offset=[8, 16], seed=1
    )
    root = zarr.open_group(str(path), mode="r")
    assert root.metadata.zarr_format == 3
    for split in ("train", "validate"):
        for name in ("raw", "labels", "organelles", "mask"):
            ms = root[dataset_path(split, name)].attrs["ome"]["multiscales"][0]
            assert [d["path"] for d in ms["datasets"]] == ["s0", "s1"]
    raw = ZarrArray.open(path, "train/raw")
    assert raw.voxel_size == (4.0, 4.0) and raw.offset == (8.0, 16.0)
    assert raw.roi.shape == (256.0, 192.0)
    coarse = ZarrArray.open(path, "train/raw", scale_voxel_size=[8, 8])
    assert coarse.spatial_shape == (32, 24)
    # A second call with the same parameters reuses the container.
    mtime = (path / "zarr.json").stat().st_mtime_ns
    ensure_synthetic(
        tmp_path / "s.zarr", dims=2, shape=[64, 48], voxel_size=[4, 4], offset=[8, 16], seed=1
    )
    assert (path / "zarr.json").stat().st_mtime_ns == mtime
    assert not np.array_equal(
        zarr.open_group(str(path))["train/raw/s0"][:],
        zarr.open_group(str(path))["validate/raw/s0"][:],
    )
