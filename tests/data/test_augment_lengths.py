"""Augmentation lengths in nm or voxels: the same config means the same voxels at any scale."""

from __future__ import annotations

import monai.transforms as mt
import numpy as np
import pytest
from omegaconf import OmegaConf

from dacapo_hydra.config.trainer import AugmentConfig
from dacapo_hydra.data.augment import build_augment, build_deformation
from dacapo_hydra.data.augmentations import RandMisalignmentd
from dacapo_hydra.data.deform import Deformation
from dacapo_hydra.data.roi import Roi

SHAPE = (12, 16, 16)


def _cfg(**kw: object):
    base = OmegaConf.structured(AugmentConfig)
    for key in ("mirror_prob", "transpose_prob", "intensity_prob"):
        base[key] = 0.0
    return OmegaConf.merge(base, kw)


def _deformation(voxel_size: tuple[float, ...], **elastic: object) -> Deformation:
    deformation = build_deformation(
        _cfg(elastic={"prob": 1.0, **elastic}), len(voxel_size), voxel_size, SHAPE
    )
    assert deformation is not None
    return deformation


def _transform(cfg, voxel_size: tuple[float, ...], kind: type) -> mt.Transform:
    (transform,) = [
        t for t in build_augment(cfg, 3, SHAPE, SHAPE, voxel_size).transforms if isinstance(t, kind)
    ]
    return transform


@pytest.mark.parametrize("size", [8.0, 250.0])
def test_default_elastic_lengths_are_the_same_voxels_at_8_and_250_nm(size: float) -> None:
    deformation = _deformation((size,) * 3)
    assert deformation.spacing == (12.5 * size,) * 3
    assert deformation.sigma == (1.25 * size,) * 3


def test_warps_at_8_and_250_nm_move_the_same_voxels() -> None:
    """One seed, one crop in voxels: the warp's source points, in voxels, agree at both scales."""
    points = []
    for size in (8.0, 250.0):
        voxel_size = (size,) * 3
        roi = Roi((size * 3, size * 5, size * 7), tuple(n * size for n in SHAPE))
        warp = _deformation(voxel_size).sample(np.random.default_rng(0), roi, voxel_size)
        assert warp is not None and warp.field is not None
        # 12 voxels span 11 between the first and last centres: 2 control points in z, 3 in y, x.
        np.testing.assert_allclose(warp.grid_step / size, [11.0, 7.5, 7.5])
        points.append(warp.source_points(roi, voxel_size).numpy() / size)
    np.testing.assert_allclose(points[0], points[1], atol=1e-4)
    first = 0.5 - np.array(SHAPE) / 2  # the first voxel's centre from the crop's, in voxels
    assert not np.allclose(points[0][:, 0, 0, 0], first, atol=0.01)  # the warp moved it


def test_nm_string_equals_the_number() -> None:
    a = _deformation((8.0,) * 3, control_point_spacing="100nm", jitter_sigma="0.01um")
    b = _deformation((8.0,) * 3, control_point_spacing=100, jitter_sigma=10)
    assert a.spacing == b.spacing == (100.0,) * 3
    assert a.sigma == b.sigma == (10.0,) * 3


def test_per_axis_lengths_use_their_axis_voxels() -> None:
    deformation = _deformation(
        (40.0, 8.0, 8.0),
        control_point_spacing=["2vx", "12.5vx", 96],
        jitter_sigma=["0.5vx", "1.25vx", "1nm"],
    )
    assert deformation.spacing == (80.0, 100.0, 96.0)
    assert deformation.sigma == (20.0, 10.0, 1.0)


def test_scalar_voxel_spacing_is_isotropic_in_world_units() -> None:
    deformation = _deformation((1000.0, 250.0, 250.0))
    assert deformation.spacing == (3125.0,) * 3


@pytest.mark.parametrize(
    ("elastic", "message"),
    [
        (
            {"control_point_spacing": "0.5vx"},
            r"trainer.augment.elastic.control_point_spacing: '0.5vx' is 4 nm, below 1 voxel",
        ),
        (  # the crop is 16 x 8 = 128 nm at most
            {"control_point_spacing": "20vx"},
            r"trainer.augment.elastic.control_point_spacing: '20vx' is 160 nm, more than the "
            r"crop's 128 nm",
        ),
        (  # z holds 12 x 8 = 96 nm
            {"control_point_spacing": ["13vx", "2vx", "2vx"]},
            r"trainer.augment.elastic.control_point_spacing\[0\]: '13vx' is 104 nm, more than",
        ),
        (
            {"jitter_sigma": "-1vx"},
            r"trainer.augment.elastic.jitter_sigma: '-1vx' is -8 nm, below 0 voxel",
        ),
        (
            {"control_point_spacing": "5 miles"},
            r"trainer.augment.elastic.control_point_spacing: cannot read '5 miles'",
        ),
    ],
)
def test_bad_elastic_lengths_are_refused_naming_the_key(elastic: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _deformation((8.0,) * 3, **elastic)


def test_elastic_lengths_are_not_checked_when_elastic_is_off() -> None:
    cfg = _cfg(elastic={"prob": 0.0, "control_point_spacing": "0.5vx"}, rotation={"prob": 1.0})
    deformation = build_deformation(cfg, 3, (8.0,) * 3, SHAPE)
    assert deformation is not None and deformation.elastic_prob == 0


@pytest.mark.parametrize("size", [8.0, 250.0])
def test_blur_sigma_is_the_same_voxels_at_8_and_250_nm(size: float) -> None:
    blur = _transform(_cfg(blur={"prob": 1.0}), (size,) * 3, mt.RandGaussianSmoothd)
    smooth = blur.rand_smooth
    assert smooth.sigma_x == smooth.sigma_y == smooth.sigma_z == (0.5, 1.5)


def test_blur_lengths_per_axis_and_in_nm() -> None:
    cfg = _cfg(blur={"prob": 1.0, "sigma_min": [0, "1vx", 4], "sigma_max": "2vx"})
    smooth = _transform(cfg, (40.0, 8.0, 8.0), mt.RandGaussianSmoothd).rand_smooth
    # One sigma is the same nm on every axis: 2vx = 16 nm = 0.4 z voxels.
    assert (smooth.sigma_x, smooth.sigma_y, smooth.sigma_z) == ((0, 0.4), (1, 2), (0.5, 2))


@pytest.mark.parametrize(
    ("blur", "message"),
    [
        ({"sigma_max": "-1vx"}, r"trainer.augment.blur.sigma_max: '-1vx' is -8 nm, below 0"),
        ({"sigma_min": "2vx", "sigma_max": "1vx"}, r"trainer.augment.blur: sigma_min '2vx' is"),
    ],
)
def test_bad_blur_lengths_are_refused_naming_the_key(blur: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_augment(_cfg(blur={"prob": 1.0, **blur}), 3, SHAPE, SHAPE, (8.0,) * 3)


@pytest.mark.parametrize(("size", "shift"), [(8.0, "4vx"), (250.0, "4vx"), (8.0, 32), (8, "30nm")])
def test_misalignment_shift_in_voxels(size: float, shift: object) -> None:
    cfg = _cfg(misalignment={"prob": 1.0, "max_shift": shift})
    assert _transform(cfg, (size * 5, size, size), RandMisalignmentd).max_shift == 4


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        ("0.5vx", r"trainer.augment.misalignment.max_shift: '0.5vx' is 4 nm, below 1 voxel"),
        ("17vx", r"trainer.augment.misalignment.max_shift: '17vx' is 136 nm, more than the crop"),
    ],
)
def test_bad_misalignment_shift_is_refused_naming_the_key(shift: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_augment(
            _cfg(misalignment={"prob": 1.0, "max_shift": shift}), 3, SHAPE, SHAPE, (8.0,) * 3
        )
