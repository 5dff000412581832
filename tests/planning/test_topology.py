"""Per-axis downsampling and kernels from the voxel size: exact values, gunpowder style."""

from __future__ import annotations

import pytest

from dacapo_hydra.planning.topology import plan_topology, receptive_field


def test_serial_section_em_pools_in_plane_until_z_is_near() -> None:
    t = plan_topology((40.0, 4.0, 4.0), 200.0)  # 800 nm wanted: the most levels
    assert t.downsample_factors == ((1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2))
    assert t.kernels == ((1, 3, 3), (1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3))
    assert t.receptive_field == (17, 185, 185)
    assert "4 levels (the most)" in t.reason and "axis [0] coarse" in t.reason


def test_anisotropic_light_microscopy() -> None:
    t = plan_topology((2000.0, 400.0, 400.0), 2000.0)  # nuclei: 8000 nm = 20 voxels wanted
    assert t.downsample_factors == ((1, 2, 2), (1, 2, 2))
    assert t.kernels == ((1, 3, 3), (1, 3, 3), (3, 3, 3))  # z: 1600 nm yx is near 2000
    assert t.receptive_field == (5, 41, 41)
    deeper = plan_topology((2000.0, 400.0, 400.0), 5000.0)  # 20 um = 50 voxels
    assert deeper.downsample_factors == ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    assert deeper.receptive_field == (17, 89, 89)
    assert t.cnnectome()["kernel_size_down"][0] == [[1, 3, 3], [1, 3, 3]]


def test_isotropic_em_stops_at_enough_receptive_field() -> None:
    t = plan_topology((8.0, 8.0, 8.0), 40.0)  # 160 nm = 20 voxels: 2 levels see 41
    assert t.downsample_factors == ((2, 2, 2), (2, 2, 2))
    assert t.kernels == ((3, 3, 3),) * 3
    assert t.receptive_field == (41, 41, 41)
    assert plan_topology((8.0, 8.0, 8.0), 80.0).levels == 2  # 320 nm = 40 voxels: 41
    assert plan_topology((8.0, 8.0, 8.0), 100.0).levels == 3  # 400 nm = 50: 89


def test_2d_light_microscopy() -> None:
    t = plan_topology((325.0, 325.0), 3000.0)  # 12 um = 37 pixels: 41
    assert t.downsample_factors == ((2, 2), (2, 2))
    assert t.kernels == ((3, 3),) * 3
    assert t.receptive_field_nm == (41 * 325.0, 41 * 325.0)
    assert t.monai(16) == {
        "channels": [16, 32, 64],
        "strides": [[2, 2], [2, 2]],
        "kernel_size": [3, 3],
        "up_kernel_size": [3, 3],
    }


def test_unknown_object_size_takes_the_most_levels() -> None:
    assert plan_topology((8.0, 8.0), None).levels == 4


@pytest.mark.parametrize(
    ("factors", "kernels", "field"),
    [
        ([], [(3, 3)], (5, 5)),
        ([(2, 2)], [(3, 3), (3, 3)], (17, 17)),
        ([(1, 2)], [(1, 3), (3, 3)], (5, 17)),
    ],
)
def test_receptive_field(factors: list, kernels: list, field: tuple[int, ...]) -> None:
    assert receptive_field(factors, kernels) == field
