"""dacapo-convert: TIFF stacks become OME-zarr multiscales that the datasplit reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from dacapo_hydra.cli import convert_main as main
from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi


def test_multipage_tiff_to_ome_zarr(tmp_path: Path) -> None:
    stack = np.random.default_rng(0).integers(0, 255, (10, 12, 14), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    out = tmp_path / "out.zarr"
    main(
        [
            "--input",
            str(tmp_path / "stack.tif"),
            "--output",
            str(out),
            "--voxel-size",
            "40",
            "8",
            "8",
            "--offset",
            "400",
            "0",
            "80",
            "--chunk",
            "4",
            "--levels",
            "2",
        ]
    )
    s0 = ZarrArray.open(out, "raw")
    assert s0.voxel_size == (40.0, 8.0, 8.0) and s0.offset == (400.0, 0.0, 80.0)
    np.testing.assert_array_equal(s0.read(s0.roi), stack)
    s1 = ZarrArray.open(out, "raw", scale_voxel_size=[80, 16, 16])
    assert s1.spatial_shape == (5, 6, 7)
    expected = stack.reshape(5, 2, 6, 2, 7, 2).mean((1, 3, 5)).astype(np.uint8)
    np.testing.assert_array_equal(s1.read(s1.roi), expected)
    np.testing.assert_array_equal(
        s0.read(Roi((440.0, 8.0, 96.0), (80.0, 16.0, 8.0))), stack[1:3, 1:3, 2:3]
    )


def test_folder_of_sections_as_labels(tmp_path: Path) -> None:
    labels = np.arange(6 * 8 * 8, dtype=np.uint32).reshape(6, 8, 8) % 5
    folder = tmp_path / "sections"
    folder.mkdir()
    for z, section in enumerate(labels):
        tifffile.imwrite(folder / f"sec_{z:03d}.tif", section)
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros(labels.shape, np.uint8))
    out = tmp_path / "out.zarr"
    main(
        ["--input", str(tmp_path / "raw.tif"), "--output", str(out), "--voxel-size", "8", "8", "8"]
    )
    main(
        [
            "--input",
            str(folder),
            "--output",
            str(out),
            "--voxel-size",
            "8",
            "8",
            "8",
            "--labels",
            "--levels",
            "2",
            "--chunk",
            "4",
        ]
    )
    np.testing.assert_array_equal(
        ZarrArray.open(out, "raw/labels/labels").read(Roi((0,) * 3, (48, 64, 64))), labels
    )
    s1 = ZarrArray.open(out, "raw/labels/labels", scale_voxel_size=[16, 16, 16])
    np.testing.assert_array_equal(s1.read(s1.roi), labels[::2, ::2, ::2])


def test_convert_errors_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "--input",
                str(tmp_path / "none.tif"),
                "--output",
                str(tmp_path / "o.zarr"),
                "--voxel-size",
                "8",
            ]
        )
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((4, 4), np.uint8))
    from dacapo_hydra.data.tools.convert import convert

    with pytest.raises(ValueError, match="needs 2 voxel_size"):
        convert(tmp_path / "img.tif", tmp_path / "o.zarr", "raw", [8, 8, 8])
