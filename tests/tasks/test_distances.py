"""The edt-based distance maths agree with scipy's per-object distance transforms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.ndimage import distance_transform_edt

from dacapo_hydra.tasks.distances import distance_to_unknown, inner_distance, signed_distance

CASES = [((20, 24, 28), (8.0, 8.0, 8.0)), ((12, 30, 26), (40.0, 4.0, 6.0)), ((30, 40), (3.0, 5.0))]


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 2) > 0


@pytest.mark.parametrize(("shape", "voxel_size"), CASES)
def test_signed_distance_equals_two_scipy_transforms(shape, voxel_size) -> None:
    fg = _blobs(shape, 0)
    inside = distance_transform_edt(fg, sampling=voxel_size)
    outside = distance_transform_edt(~fg, sampling=voxel_size)
    half = 0.5 * min(voxel_size)
    expected = np.clip(np.where(fg, inside - half, half - outside), -60, 60)
    got = signed_distance(fg, voxel_size, 60.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)
    assert (signed_distance(np.ones(shape), voxel_size, 9.0) == 9).all()
    assert (signed_distance(np.zeros(shape), voxel_size, 9.0) == -9).all()


@pytest.mark.parametrize(("shape", "voxel_size"), CASES)
def test_inner_distance_equals_scipy_per_object(shape, voxel_size) -> None:
    labels, _ = ndimage.label(_blobs(shape, 1))
    labels = labels.astype(np.uint64) * np.uint64(3) + (labels > 0) * np.uint64(2**40)
    touching = labels.copy()
    touching[: shape[0] // 2][labels[: shape[0] // 2] == 0] = 7  # an object touching others
    half = 0.5 * min(voxel_size)
    for case in (labels, touching):
        expected = np.zeros(shape)
        for value in np.unique(case):
            if value == 0:
                continue
            inside = case == value
            d = distance_transform_edt(inside, sampling=voxel_size) - half
            expected[inside] = np.minimum(d[inside], 50.0)
        np.testing.assert_allclose(inner_distance(case, voxel_size, 50.0), expected, atol=1e-4)
    alone = np.full(shape, 5, np.uint64)
    assert (inner_distance(alone, voxel_size, 50.0) == 50).all()


@pytest.mark.parametrize(("shape", "voxel_size"), CASES)
def test_distance_to_unknown_equals_scipy_on_the_padded_mask(shape, voxel_size) -> None:
    for mask in (_blobs(shape, 2), np.ones(shape, np.uint8)):
        padded = np.pad(mask.astype(bool), 1)
        expected = distance_transform_edt(padded, sampling=voxel_size)[(slice(1, -1),) * len(shape)]
        np.testing.assert_allclose(distance_to_unknown(mask, voxel_size), expected, rtol=1e-6)
