"""Properties of the ROI algebra (`Roi`) and of an array's voxel grid (`snap`, `to_voxels`).

ROI corners are whole numbers here (exact in floating point), so the set algebra
holds exactly; the grid properties use voxel sizes that are not powers of two
(3.24 nm, 0.3 nm) as well, where they hold to the grid's tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi
from tests.data.helpers import memory_array

PROPERTY = settings(max_examples=40, deadline=None, database=None)
# Every ROI drawn lies inside this box, so voxel masks over it compare ROIs as sets.
LOW, HIGH = -20, 40
VOXEL_SIZES = (1.0, 4.0, 8.0, 0.5, 3.24, 0.3, 40.0)


@st.composite
def rois(draw: st.DrawFn, dims: int) -> Roi:
    """A box of whole-number corners inside [LOW, HIGH) (possibly empty)."""
    begin = tuple(draw(st.integers(LOW, HIGH - 1)) for _ in range(dims))
    shape = tuple(draw(st.integers(0, HIGH - b)) for b in begin)
    return Roi(tuple(map(float, begin)), tuple(map(float, shape)))


@st.composite
def roi_sets(draw: st.DrawFn, count: int) -> tuple[Roi, ...]:
    """`count` ROIs of one dimensionality (1 to 3 axes)."""
    dims = draw(st.integers(1, 3))
    return tuple(draw(rois(dims)) for _ in range(count))


def mask(roi: Roi) -> np.ndarray:
    """The integer points of [LOW, HIGH)^dims inside `roi`."""
    out = np.zeros((HIGH - LOW,) * roi.dims, bool)
    index = tuple(
        slice(int(b) - LOW, int(e) - LOW) for b, e in zip(roi.begin, roi.end, strict=True)
    )
    if not roi.empty():
        out[index] = True
    return out


def grid_array(voxel_size: tuple[float, ...], offset_voxels: tuple[int, ...]) -> ZarrArray:
    """A small in-memory zarr array whose grid starts `offset_voxels` voxels from 0."""
    offset = tuple(k * v for k, v in zip(offset_voxels, voxel_size, strict=True))
    return memory_array(np.zeros((4,) * len(voxel_size), np.uint8), voxel_size, offset, chunk=4)


@st.composite
def grids(draw: st.DrawFn) -> ZarrArray:
    """An array on a voxel grid of 2 or 3 axes, of any of VOXEL_SIZES and offset."""
    dims = draw(st.integers(2, 3))
    voxel_size = tuple(draw(st.sampled_from(VOXEL_SIZES)) for _ in range(dims))
    offset = tuple(draw(st.integers(-20, 20)) for _ in range(dims))
    return grid_array(voxel_size, offset)


@PROPERTY
@given(roi_sets(2))
def test_intersection_is_commutative_and_the_set_intersection(pair: tuple[Roi, Roi]) -> None:
    """a ∩ b = b ∩ a, and its points are exactly those in both a and b."""
    a, b = pair
    both = a.intersect(b)
    assert both == b.intersect(a)
    assert np.array_equal(mask(both), mask(a) & mask(b))
    assert both.empty() == (not (mask(a) & mask(b)).any())
    if not both.empty():
        assert a.contains(both) and b.contains(both)


@PROPERTY
@given(roi_sets(3))
def test_intersection_is_associative(triple: tuple[Roi, Roi, Roi]) -> None:
    """(a ∩ b) ∩ c and a ∩ (b ∩ c) hold the same points (and are equal when non-empty)."""
    a, b, c = triple
    left = a.intersect(b).intersect(c)
    right = a.intersect(b.intersect(c))
    assert np.array_equal(mask(left), mask(right))
    if not left.empty():
        assert left == right


@PROPERTY
@given(roi_sets(2))
def test_contains_is_subset_and_means_intersection_is_the_inner_box(pair: tuple[Roi, Roi]) -> None:
    """For a non-empty b: a contains b iff b's points are a's, iff a ∩ b = b; a contains a."""
    a, b = pair
    assert a.contains(a)
    if b.empty():
        return
    subset = not (mask(b) & ~mask(a)).any()
    assert a.contains(b) == subset == (a.intersect(b) == b)


@PROPERTY
@given(roi_sets(3))
def test_contains_is_transitive(triple: tuple[Roi, Roi, Roi]) -> None:
    """a ⊇ b and b ⊇ c imply a ⊇ c; the intersection of two boxes containing c contains c."""
    a, b, c = triple
    if a.contains(b) and b.contains(c):
        assert a.contains(c)
    if a.contains(c) and b.contains(c):
        assert a.intersect(b).contains(c)


@PROPERTY
@given(roi_sets(1), st.data())
def test_grow_and_shrink_are_inverse_and_keep_the_centre(
    rs: tuple[Roi], data: st.DataObject
) -> None:
    """grow(g) then grow(-g) is the identity, grow(g) contains the box for g >= 0 and keeps
    its centre, and grow(g1).grow(g2) = grow(g1 + g2)."""
    (roi,) = rs
    g1 = tuple(float(data.draw(st.integers(0, 10))) for _ in range(roi.dims))
    g2 = tuple(float(data.draw(st.integers(0, 10))) for _ in range(roi.dims))
    grown = roi.grow(g1)
    assert grown.grow(tuple(-g for g in g1)) == roi
    assert grown.contains(roi) and grown.center == roi.center
    assert grown.shape == tuple(s + 2 * g for s, g in zip(roi.shape, g1, strict=True))
    assert grown.grow(g2) == roi.grow(tuple(a + b for a, b in zip(g1, g2, strict=True)))


@PROPERTY
@given(roi_sets(2), st.data())
def test_shift_commutes_with_intersection_and_containment(
    pair: tuple[Roi, Roi], data: st.DataObject
) -> None:
    """Translating both boxes translates their intersection and keeps containment."""
    a, b = pair
    by = tuple(float(data.draw(st.integers(-30, 30))) for _ in range(a.dims))
    back = tuple(-d for d in by)
    assert a.shift(by).shift(back) == a and a.shift(by).shape == a.shape
    assert a.shift(by).intersect(b.shift(by)) == a.intersect(b).shift(by)
    assert a.shift(by).contains(b.shift(by)) == a.contains(b)


def test_begin_and_shape_must_have_the_same_length() -> None:
    """A box with begin and shape of different lengths is refused."""
    with pytest.raises(ValueError, match="differ in length"):
        Roi((0.0, 0.0), (1.0,))


@PROPERTY
@given(grids(), st.data())
def test_voxel_slices_round_trip_on_the_grid(array: ZarrArray, data: st.DataObject) -> None:
    """world → voxel → world is the identity for ROIs on the array's grid."""
    starts = [data.draw(st.integers(-30, 30)) for _ in range(array.dims)]
    sizes = [data.draw(st.integers(0, 30)) for _ in range(array.dims)]
    roi = Roi(
        tuple(o + s * v for o, s, v in zip(array.offset, starts, array.voxel_size, strict=True)),
        tuple(n * v for n, v in zip(sizes, array.voxel_size, strict=True)),
    )
    index = array.to_voxels(roi)
    assert index == tuple(slice(s, s + n) for s, n in zip(starts, sizes, strict=True))
    back = Roi(
        tuple(
            o + i.start * v for o, i, v in zip(array.offset, index, array.voxel_size, strict=True)
        ),
        tuple((i.stop - i.start) * v for i, v in zip(index, array.voxel_size, strict=True)),
    )
    assert back == roi
    assert array.snap(roi).begin == pytest.approx(roi.begin, abs=1e-9)
    assert array.snap(roi).shape == pytest.approx(roi.shape, abs=1e-9)


@PROPERTY
@given(grids(), st.data())
def test_off_grid_rois_are_refused(array: ZarrArray, data: st.DataObject) -> None:
    """A ROI whose begin is a fraction of a voxel off the grid has no voxel slices."""
    axis = data.draw(st.integers(0, array.dims - 1))
    fraction = data.draw(st.floats(0.05, 0.95))
    begin = list(array.offset)
    begin[axis] += fraction * array.voxel_size[axis]
    with pytest.raises(ValueError, match="not aligned with the voxel grid"):
        array.to_voxels(Roi(tuple(begin), tuple(4 * v for v in array.voxel_size)))


@PROPERTY
@given(grids(), st.data())
def test_snapping_outward_gives_the_smallest_grid_box_containing_the_roi(
    array: ZarrArray, data: st.DataObject
) -> None:
    """snap(r) lies on the grid, contains r (to the grid's 1e-6 voxel tolerance), is less
    than a voxel larger per side, and snapping again changes nothing."""
    vs = array.voxel_size
    begin = tuple(
        o + data.draw(st.floats(-30, 30)) * v for o, v in zip(array.offset, vs, strict=True)
    )
    shape = tuple(data.draw(st.floats(0.0, 30)) * v for v in vs)
    roi = Roi(begin, shape)
    snapped = array.snap(roi)
    array.to_voxels(snapped)  # on the grid, or it raises
    slack = tuple(1e-6 * v + 1e-9 * max(1.0, abs(b)) for v, b in zip(vs, begin, strict=True))
    assert snapped.grow(slack).contains(roi)
    for sb, se, rb, re, v in zip(snapped.begin, snapped.end, roi.begin, roi.end, vs, strict=True):
        assert rb - v < sb and se < re + v
    again = array.snap(snapped)
    assert again.begin == pytest.approx(snapped.begin) and again.shape == pytest.approx(
        snapped.shape
    )
