"""Hausdorff distances in nm against scipy's distance transform."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from dacapo_hydra.evaluation.hausdorff import (
    Stencil,
    directed_distances,
    max_distance,
    normalize_distance,
    pair_hausdorff,
)


def _reference(a: np.ndarray, b: np.ndarray, voxel_size: tuple[float, ...]) -> tuple[float, float]:
    """The challenge's `compute_hausdorff_distance_roi`, "standard" and "percentile"."""
    to_b = ndimage.distance_transform_edt(~b, sampling=voxel_size)[a]
    to_a = ndimage.distance_transform_edt(~a, sampling=voxel_size)[b]
    return max(to_b.max(), to_a.max()), max(np.percentile(to_b, 95), np.percentile(to_a, 95))


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from([(1.0, 1.0), (4.0, 4.0), (40.0, 4.0, 4.0), (8.0, 8.0, 8.0), (2.0, 3.0, 5.0)]),
    st.sampled_from(["random", "shifted", "far"]),
)
def test_equals_distance_transform(seed: int, voxel_size: tuple[float, ...], kind: str) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(4, 18, len(voxel_size)))
    a = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.5
    if kind == "random":
        b = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.5
    elif kind == "shifted":
        b = np.roll(a, int(rng.integers(-2, 3)), axis=int(rng.integers(len(shape))))
    else:  # a distant extra part: beyond the stencil, searched in the k-d tree
        b = a.copy()
        b[(0,) * len(shape)] = True
    if not a.any() or not b.any():
        return
    got = pair_hausdorff(a, b, Stencil.for_voxel_size(voxel_size))
    assert got == pytest.approx(_reference(a, b, voxel_size))


def test_directed_distances_per_voxel() -> None:
    a = np.zeros((5, 9), bool)
    a[2, 0:9] = True
    b = np.zeros_like(a)
    b[2, 0] = True
    d = directed_distances(a, b, Stencil.for_voxel_size((10.0, 3.0)))
    np.testing.assert_allclose(d, 3.0 * np.arange(1, 9))


def test_cap_and_normalization() -> None:
    assert max_distance((40.0, 4.0, 4.0), (64, 256, 256)) == 512.0
    np.testing.assert_allclose(
        normalize_distance(np.array([0.0, 30.0, np.inf]), (3.0, 4.0)),
        [1.0, 1.01**-6, 0.0],
    )


def test_stencil_is_sorted_and_complete() -> None:
    stencil = Stencil.for_voxel_size((40.0, 4.0, 4.0))
    assert np.all(np.diff(stencil.lengths) >= 0)
    assert stencil.lengths.max() <= 40.0 + 1e-9
    assert stencil.extent.tolist() == [1, 10, 10]
    # Every offset of length <= 40 nm, the 6 neighbours along z and in-plane included.
    inside = {tuple(o) for o in stencil.offsets.tolist()}
    assert {(1, 0, 0), (-1, 0, 0), (0, 10, 0), (0, 6, 8)} <= inside
    assert (1, 1, 0) not in inside


@pytest.mark.parametrize(
    ("far_rows", "path"),
    [(0, None), (1, "cKDTree"), (9, "distance_transform_edt")],
)
def test_every_search_path_is_exact(
    far_rows: int, path: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shifted square (stencil), plus a few (k-d tree) or many (transform) far voxels."""
    import dacapo_hydra.evaluation.hausdorff as hausdorff

    used = []
    for name in ("cKDTree", "distance_transform_edt"):
        original = getattr(hausdorff, name)

        def spy(*args: object, _name: str = name, _original: object = original, **kw: object):
            used.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(hausdorff, name, spy)
    voxel_size = (8.0, 4.0)
    target = np.zeros((40, 40), bool)
    target[5:30, 5:30] = True
    source = np.roll(target, 1, axis=1)
    source[40 - far_rows :] = True  # rows 31-39 lie beyond the 8 nm stencil
    got = directed_distances(source, target, Stencil.for_voxel_size(voxel_size))
    field = ndimage.distance_transform_edt(~target, sampling=voxel_size)
    np.testing.assert_allclose(got, field[source & ~target])
    assert used == ([] if path is None else [path])
