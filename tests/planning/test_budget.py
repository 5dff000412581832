"""Crop shape and batch from a memory budget: the GPU branch by its arithmetic (exact values)."""

from __future__ import annotations

import pytest

from dacapo_hydra.planning.budget import (
    CPU_BUDGET,
    activation_bytes,
    device_budget,
    fmaps_per_level,
    plan_crop,
    shape_network,
)
from dacapo_hydra.planning.topology import plan_topology

GIB = 2**30
ISO = plan_topology((8.0, 8.0, 8.0), 100.0)  # 3 levels of 2x2x2
SSEM = plan_topology((40.0, 4.0, 4.0), 200.0)  # 4 levels, z pooled once


def test_budget_of_a_given_gpu_and_of_a_cpu() -> None:
    assert device_budget(80 * GIB).bytes == 60 * GIB and device_budget(80 * GIB).device == "gpu"
    cpu = device_budget(0)
    assert (cpu.bytes, cpu.device) == (CPU_BUDGET, "cpu")


@pytest.mark.parametrize(
    ("gib", "input_shape", "output_shape", "batch"),
    [
        (80, (252, 252, 252), (160, 160, 160), 3),  # the largest start (256 voxels) fits 3
        (16, (188, 180, 180), (96, 88, 88), 2),  # shrunk, widest axis first, to fit 2
    ],
)
def test_gpu_memory_gives_crop_and_batch_isotropic(
    gib: int, input_shape: tuple[int, ...], output_shape: tuple[int, ...], batch: int
) -> None:
    fmaps = fmaps_per_level(32, 2, ISO.levels)
    crop = plan_crop(ISO, fmaps, device_budget(gib * GIB), (1000, 1000, 1000))
    assert (crop.input_shape, crop.output_shape, crop.batch_size) == (
        input_shape,
        output_shape,
        batch,
    )
    assert crop.step_bytes == batch * activation_bytes(input_shape, ISO, fmaps)
    assert crop.step_bytes <= 0.75 * gib * GIB


@pytest.mark.parametrize(("gib", "batch"), [(80, 16), (16, 5)])
def test_gpu_memory_gives_batch_serial_section_em(gib: int, batch: int) -> None:
    fmaps = fmaps_per_level(32, 2, SSEM.levels)
    crop = plan_crop(SSEM, fmaps, device_budget(gib * GIB), (200, 2000, 2000))
    # z: 256 x 4 nm / 40 nm = 26 sections; y, x: 256 voxels, valid just below.
    assert crop.input_shape == (26, 252, 252) and crop.output_shape == (10, 48, 48)
    assert crop.batch_size == batch


def test_cpu_budget_same_padding_and_the_labelled_extent() -> None:
    fmaps = fmaps_per_level(12, 2, ISO.levels)
    crop = plan_crop(ISO, fmaps, device_budget(0), (1000, 1000, 1000), "same")
    assert crop.input_shape == crop.output_shape == (56, 56, 56) and crop.batch_size == 2
    assert crop.eval_input_shape == (112, 112, 112)
    small = plan_crop(ISO, fmaps, device_budget(0), (24, 40, 40), "same")
    assert small.input_shape == (24, 40, 40)  # no larger than the data


def test_activation_bytes_counts_every_level() -> None:
    # 100 x 100 at 12 maps, then 50 x 50 at 24: (6 * 12 * 10000 + 4 * 24 * 2500) * 4 bytes.
    t = plan_topology((8.0, 8.0), 16.0, min_levels=1, max_levels=1)
    assert activation_bytes((100, 100), t, [12, 24]) == (6 * 12 * 10000 + 4 * 24 * 2500) * 4


def test_the_shape_arithmetic_is_the_networks() -> None:
    net = shape_network(SSEM)
    assert net.valid_input_shape((1, 1, 1), "up") == (18, 220, 220)
    assert net.output_shape((26, 252, 252)) == (10, 48, 48)


def test_a_budget_too_small_is_refused_in_one_line() -> None:
    from dacapo_hydra.planning.budget import Budget

    with pytest.raises(ValueError, match=r"plan: the smallest valid crop \(18, 220, 220\) needs"):
        plan_crop(SSEM, [32, 64, 128, 256, 512], Budget(2**20, "gpu", "1 MiB"), (99, 999, 999))
