"""Synthetic data at several voxel sizes: objects are sized in nm, whatever the grid.

The benchmark datasplits (2D nuclei at 325 nm, 3D nuclei at 2000x400x400 nm, EM cells at
8 nm and at 40x4x4 nm) depend on this: an anisotropic grid must show the same objects,
in world units, as a fine isotropic one, i.e. flattened in voxels along the coarse axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from dacapo_hydra.api import compose
from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.tools.synthetic import dataset_path, ensure_synthetic, generate_volume
from dacapo_hydra.data.tools.synthetic_nuclei import generate_nuclei


def extents_nm(labels: np.ndarray, voxel_size: tuple[float, ...]) -> dict[int, np.ndarray]:
    """Each object's bounding-box extent in nm per axis (voxels counted whole)."""
    boxes = ndimage.find_objects(labels.astype(np.int64))
    return {
        i: np.array([s.stop - s.start for s in box]) * np.asarray(voxel_size)
        for i, box in enumerate(boxes, start=1)
        if box is not None
    }


def test_anisotropic_nuclei_are_the_isotropic_nuclei_in_nm() -> None:
    # The same 16x25.6x25.6 µm field at 400 nm isotropic and with 2 µm z steps: the
    # geometry is drawn in µm, so each coarse section is every fifth fine one.
    fine_vs, coarse_vs = (400.0, 400.0, 400.0), (2000.0, 400.0, 400.0)
    fine = generate_nuclei((40, 64, 64), seed=5, voxel_size=fine_vs)["labels"]
    coarse = generate_nuclei((8, 64, 64), seed=5, voxel_size=coarse_vs)["labels"]
    sampled = fine[::5]
    assert ((sampled > 0) == (coarse > 0)).mean() > 0.99
    fine_extent, coarse_extent = extents_nm(fine, fine_vs), extents_nm(coarse, coarse_vs)
    sampled_extent = extents_nm(sampled, coarse_vs)
    compared = 0
    for c, extent in coarse_extent.items():
        ids, counts = np.unique(sampled[coarse == c], return_counts=True)
        f = int(ids[counts.argmax()])
        if f == 0:
            continue
        # The same nucleus spans the same nm along every axis, within one voxel, as the
        # fine one seen in the same sections; and in z within a section of all of it.
        assert (np.abs(sampled_extent[f] - extent) <= np.asarray(coarse_vs)).all(), (c, f)
        assert abs(fine_extent[f][0] - extent[0]) <= coarse_vs[0], (c, f)
        compared += 1
    assert compared >= 5
    # In voxels, z holds a fifth as many: the nuclei look flattened, as they should.
    inner = [e / np.asarray(coarse_vs) for e in coarse_extent.values()]
    ratio = np.median([e[1:].mean() for e in inner]) / np.median([e[0] for e in inner])
    assert 3.0 < ratio < 7.0


def test_em_cells_are_round_in_nm_at_40x4x4() -> None:
    vs = (40.0, 4.0, 4.0)
    cells = generate_volume((16, 160, 160), seed=2, cell_diameter=80.0, voxel_size=vs)
    assert cells["raw"].dtype == np.uint8
    extents = np.array(list(extents_nm(cells["labels"], vs).values()))
    inner = extents[(extents < np.array([640, 640, 560])).all(axis=1)]  # not cut by the edge
    assert len(inner) >= 5
    z, y, x = np.median(inner, axis=0)
    # Round in nm (z within a section of y and x up to the Voronoi cells' spread) ...
    assert 0.6 < z / y < 1.6 and 0.6 < z / x < 1.6
    # ... so ten times fewer voxels along z than along y.
    assert 5.0 < (y / 4.0) / (z / 40.0) < 17.0


def test_isotropic_em_is_unchanged_by_an_isotropic_voxel_size() -> None:
    a = generate_volume((24, 24, 24), seed=1)
    b = generate_volume((24, 24, 24), seed=1, voxel_size=(8.0, 8.0, 8.0))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_test_volume_and_voxel_size_metadata(tmp_path: Path) -> None:
    path = ensure_synthetic(
        tmp_path / "ssem.zarr",
        shape=[8, 48, 48],
        voxel_size=[40, 4, 4],
        cell_diameter=96,
        test=True,
        chunk=16,
    )
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["dacapo_synthetic"]["cell_diameter"] == 96.0
    for split in ("train", "validate", "test"):
        for name in ("raw", "labels", "mask"):
            ms = root[dataset_path(split, name)].attrs["ome"]["multiscales"][0]
            scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
            assert scales == [[40.0, 4.0, 4.0], [80.0, 8.0, 8.0]]
    raw = ZarrArray.open(path, "test/raw")
    assert raw.voxel_size == (40.0, 4.0, 4.0) and raw.roi.shape == (320.0, 192.0, 192.0)
    test = root["test/raw/s0"][:]
    assert test.dtype == np.uint8 and not np.array_equal(test, root["train/raw/s0"][:])
    assert root["test/raw/labels/labels/s0"][:].max() > 0


def test_nuclei_counts_are_uint16_with_a_background_offset() -> None:
    v = generate_nuclei((96, 96), seed=0, voxel_size=(325.0, 325.0))
    raw, labels = v["raw"], v["labels"]
    assert raw.dtype == np.uint16
    background = raw[labels == 0]
    assert 80 < np.median(background) < 500  # a camera offset, not zero
    assert np.median(raw[labels > 0]) > 2 * np.median(background)


@pytest.mark.parametrize(
    ("option", "voxel_size", "kind"),
    [
        ("nuclei_2d_325nm", [325.0, 325.0], "nuclei"),
        ("nuclei_3d_2000x400nm", [2000.0, 400.0, 400.0], "nuclei"),
        ("cells_3d_8nm", [8.0, 8.0, 8.0], "em"),
        ("cells_3d_40x4nm", [40.0, 4.0, 4.0], "em"),
    ],
)
def test_benchmark_datasplits_compose(option: str, voxel_size: list[float], kind: str) -> None:
    cfg = compose(datasplit=option)
    synthetic = cfg.datasplit.synthetic
    assert list(synthetic.voxel_size) == voxel_size and synthetic.kind == kind
    assert synthetic.test  # a held-out volume for scoring
    assert 0.2e6 <= np.prod(synthetic.shape) <= 3e6  # CPU-sized: a few million voxels at most


def test_cli_writes_anisotropic_cells_with_a_test_volume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dacapo_hydra.cli.synthetic import synthetic_main

    out = tmp_path / "ssem.zarr"
    synthetic_main(
        ["--output", str(out), "--shape", "8", "32", "32", "--voxel-size", "40", "4", "4"]
        + ["--cell-diameter", "96", "--test", "--chunk", "16"]
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["cell_diameter"] == 96.0 and printed["test"] is True
    assert printed["voxel_size"] == [40.0, 4.0, 4.0]
    assert "test/raw" in zarr.open_group(str(out), mode="r")
