"""The control-point warp: exact shifts, interpolation at and between control points, bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dacapo_hydra.config.trainer import AugmentConfig
from dacapo_hydra.data.augment import build_deformation
from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.deform import Deformation, Warp
from dacapo_hydra.data.interpolation import axis_weights
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.sampler import CropSampler, CropShapes
from tests.data.helpers import memory_array

VS = (8.0, 8.0, 8.0)


def _warp(field: np.ndarray | None, interpolation: str, matrix: np.ndarray | None = None) -> Warp:
    """A warp over the box [0, 8 * 24) with control points every 8 voxels (4 per axis)."""
    dims = 3
    return Warp(
        centre=np.full(dims, 96.0),
        matrix=np.eye(dims) if matrix is None else matrix,
        grid_begin=np.full(dims, 4.0),
        grid_step=np.full(dims, 8.0 * 23 / 3),
        field=field,
        interpolation=interpolation,
    )


ROI = Roi((0.0,) * 3, (8.0 * 24,) * 3)


def _lattice(roi: Roi) -> np.ndarray:
    """Voxel centres of `roi` relative to the warps' centre, (3, *shape)."""
    axes = [
        np.arange(int(s / 8)) * 8.0 + b + 4 - 96 for b, s in zip(roi.begin, roi.shape, strict=True)
    ]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_a_constant_field_is_a_pure_shift(interpolation: str) -> None:
    shift = np.array([3.0, -5.0, 7.5], np.float32)
    field = np.broadcast_to(shift[:, None, None, None], (3, 4, 4, 4)).copy()
    points = _warp(field, interpolation).source_points(ROI, VS).numpy()
    np.testing.assert_allclose(points, _lattice(ROI) + shift[:, None, None, None], atol=1e-4)


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_control_values_are_reproduced_at_the_control_points(interpolation: str) -> None:
    rng = np.random.default_rng(0)
    field = rng.normal(size=(3, 4, 4, 4)).astype(np.float32) * 10
    warp = _warp(field, interpolation)
    # Control points at voxel centres: 4 + k * 8 * 23 / 3 nm is voxel 23 k / 3: k = 0 and 3.
    points = warp.source_points(ROI, VS).numpy() - _lattice(ROI)
    for k, i in ((0, 0), (3, 23)):
        np.testing.assert_allclose(points[:, i, i, i], field[:, k, k, k], atol=1e-4)


def test_linear_interpolates_linearly_between_control_points() -> None:
    field = np.zeros((3, 4, 4, 4), np.float32)
    field[2, :, :, 1] = 12.0  # x displacement 12 nm at the second control plane in x
    points = _warp(field, "linear").source_points(ROI, VS).numpy() - _lattice(ROI)
    position = (np.arange(24) * 8.0) / (8.0 * 23 / 3)  # control units along x
    expected = 12.0 * np.clip(1 - np.abs(position - 1), 0, None)
    np.testing.assert_allclose(points[2, 5, 7], expected, atol=1e-4)
    np.testing.assert_allclose(points[:2], 0, atol=1e-4)


def test_axis_weights_sum_to_one_and_cubic_interpolates_the_unit_vectors() -> None:
    for kind in ("linear", "cubic"):
        w = axis_weights(kind, 6, -0.5, 0.1, 70)
        np.testing.assert_allclose(w.sum(1), 1, atol=1e-6)
    at_controls = axis_weights("cubic", 6, 0.0, 1.0, 6)
    np.testing.assert_allclose(at_controls, np.eye(6), atol=1e-6)


def test_cubic_is_twice_continuously_differentiable() -> None:
    """Second differences: spikes at linear's kinks, small and continuous for cubic."""
    field = np.zeros((3, 4, 4, 4), np.float32)
    field[2, :, :, 1], field[2, :, :, 2] = 20.0, -20.0
    fine = (0.25, 0.25, 0.25)  # 4 samples per nm, along one line in x
    line = Roi((0.0, 0.0, 0.0), (0.25, 0.25, ROI.shape[2]))
    second, third = {}, {}
    for kind in ("linear", "cubic"):
        d = _warp(field, kind).source_points(line, fine).numpy()[2, 0, 0].astype(np.float64)
        d -= (np.arange(len(d)) * 0.25 + 0.125) - 96  # the lattice: the displacement alone
        d = d[16:-18]  # inside the control grid (4 to 188 nm), not where it is clamped
        second[kind] = np.abs(np.diff(d, 2)).max()
        third[kind] = np.abs(np.diff(d, 3)).max()
    assert second["cubic"] < 0.05 * second["linear"]
    assert third["cubic"] < 0.01 * second["linear"]  # the second difference has no jumps


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_bounds_hold_every_source_point(interpolation: str) -> None:
    deformation = Deformation(
        3, 40.0, 15.0, 90, "all", elastic_prob=1, rotation_prob=1, interpolation=interpolation
    )
    rng = np.random.default_rng(1)
    for _ in range(10):
        warp = deformation.sample(rng, ROI, VS)
        assert warp is not None and warp.field is not None
        lo, hi = warp.bounds(ROI, VS)
        points = warp.source_points(ROI, VS).numpy().reshape(3, -1).T + warp.centre
        assert (points >= lo - 1e-3).all() and (points <= hi + 1e-3).all()


def test_cubic_overshoots_its_control_values_but_not_its_reach() -> None:
    field = np.zeros((3, 4, 4, 4), np.float32)
    field[2] = np.array([10.0, -10.0, 10.0, -10.0])  # alternating along x
    warp = _warp(field, "cubic")
    line = Roi((0.0, 0.0, 0.0), (1.0, 1.0, ROI.shape[2]))
    moved = warp.source_points(line, (1.0, 1.0, 1.0)).numpy()[2, 0, 0]
    moved -= (np.arange(len(moved)) + 0.5) - 96
    assert np.abs(moved).max() > 10.2  # beyond every control value
    reach = warp.reach(line, (1.0, 1.0, 1.0))[2]
    assert np.abs(moved).max() <= reach + 1e-4
    assert reach < 30 and _warp(field, "linear").reach(line, (1.0, 1.0, 1.0))[2] == 10


def test_grid_and_voxel_points_agree_with_source_points() -> None:
    rng = np.random.default_rng(3)
    deformation = Deformation(3, 50.0, 10.0, 30, "yx", elastic_prob=1, rotation_prob=1)
    warp = deformation.sample(rng, ROI, VS)
    assert warp is not None
    region = Roi((-40.0, -16.0, -24.0), (8.0 * 34, 8.0 * 30, 8.0 * 32))
    world = warp.source_points(ROI, VS).numpy() + warp.centre[:, None, None, None]
    voxels = (world - np.asarray(region.begin)[:, None, None, None]) / 8.0 - 0.5
    got = warp.voxel_points(ROI, VS, region, VS).numpy()
    np.testing.assert_allclose(np.moveaxis(got[..., ::-1], -1, 0), voxels, atol=1e-3)
    grid = warp.grid(ROI, VS, region, VS)[0].numpy()
    shape = np.array([34, 30, 32])
    normalised = 2 * voxels / (shape - 1)[:, None, None, None] - 1
    np.testing.assert_allclose(np.moveaxis(grid[..., ::-1], -1, 0), normalised, atol=1e-5)
    assert grid.dtype == np.float32 and isinstance(warp.grid(ROI, VS, region, VS), torch.Tensor)


def test_cubic_warped_labels_keep_only_existing_ids() -> None:
    shape = (40, 40, 40)
    ids = np.array([0, 2**40 + 1, 2**63 + 5, 17], np.uint64)
    blocks = (np.indices(shape) // 7).sum(0) % 4
    gt = memory_array(ids[blocks], VS, (0.0,) * 3, chunk=16)
    raw = memory_array((blocks * 50).astype(np.uint8), VS, (0.0,) * 3, chunk=16)
    split = DataSplit(3, [Dataset("v", raw, gt, None, 1.0)], [], Normalizer.identity(), "reflect")
    deformation = Deformation(
        3, 40.0, 12.0, 60, "all", elastic_prob=1, rotation_prob=1, interpolation="cubic"
    )
    sampler = CropSampler(split.train, split, CropShapes((20,) * 3, (12,) * 3, VS), deformation)
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    for _ in range(5):
        crop = sampler.sample(rng)
        assert crop["gt"].dtype == np.uint64 and crop["raw"].shape == (1, 20, 20, 20)
        seen |= set(np.unique(crop["gt"]).tolist())
    assert seen <= set(ids.tolist()) and len(seen) > 2


def test_interpolation_is_read_from_the_config_and_checked() -> None:
    base = OmegaConf.structured(AugmentConfig)
    cubic = OmegaConf.merge(base, {"elastic": {"prob": 1.0, "interpolation": "cubic"}})
    deformation = build_deformation(cubic, 3, VS, (24, 24, 24))
    assert deformation is not None and deformation.interpolation == "cubic"
    assert base.elastic.interpolation == "linear"
    bad = OmegaConf.merge(base, {"elastic": {"prob": 1.0, "interpolation": "quadratic"}})
    with pytest.raises(ValueError, match=r"trainer.augment.elastic.interpolation: .*'quadratic'"):
        build_deformation(bad, 3, VS, (24, 24, 24))


def test_cubic_bounds_follow_the_points_not_the_whole_fields_coefficients() -> None:
    """The region read is the points' box plus little: not twice it, as a loose bound made it."""
    deformation = Deformation(3, 100.0, 10.0, 90, "yx", 1, 1, interpolation="cubic")
    rng = np.random.default_rng(2)
    roi = Roi((0.0,) * 3, (8.0 * 64,) * 3)
    ratios = []
    for _ in range(10):
        warp = deformation.sample(rng, roi, VS)
        assert warp is not None
        lo, hi = warp.bounds(roi, VS)
        points = warp.source_points(roi, VS).numpy().reshape(3, -1)
        ratios.append(np.prod(hi - lo) / np.prod(np.ptp(points, axis=1)))
    assert 1 <= np.mean(ratios) < 1.6  # 3.2 with a bound from all the field's coefficients
