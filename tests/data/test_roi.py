"""`Roi.to_slices`: exact voxel slices of world boxes on a grid, and refusals off it."""

from __future__ import annotations

import pytest

from dacapo_hydra.data.roi import Roi


@pytest.mark.parametrize(
    ("roi", "origin", "voxel_size", "slices"),
    [
        (Roi((0.0,), (8.0,)), (0.0,), (1.0,), (slice(0, 8),)),
        (Roi((16.0, 40.0), (32.0, 8.0)), (0.0, 8.0), (8.0, 4.0), (slice(2, 6), slice(8, 10))),
        (Roi((-8.0, 0.0), (16.0, 4.0)), (-16.0, -4.0), (4.0, 2.0), (slice(2, 6), slice(2, 4))),
        (Roi((4.0,), (0.0,)), (0.0,), (4.0,), (slice(1, 1),)),  # empty box, on the grid
        # A 3.24 nm grid: world coordinates carry float rounding, the slices do not.
        (Roi((3 * 3.24,), (7 * 3.24,)), (0.0,), (3.24,), (slice(3, 10),)),
        (
            Roi((100.0, 20.0, 30.0), (40.0, 20.0, 10.0)),
            (60.0, 0.0, 0.0),
            (40.0, 4.0, 2.0),
            (slice(1, 2), slice(5, 10), slice(15, 20)),
        ),
    ],
)
def test_slices_of_boxes_on_the_grid(
    roi: Roi, origin: tuple[float, ...], voxel_size: tuple[float, ...], slices: tuple[slice, ...]
) -> None:
    assert roi.to_slices(origin, voxel_size) == slices
    assert roi.voxel_shape(voxel_size) == tuple(s.stop - s.start for s in slices)


@pytest.mark.parametrize(
    ("roi", "origin", "voxel_size"),
    [
        (Roi((4.0,), (8.0,)), (0.0,), (8.0,)),  # begins half a voxel off
        (Roi((0.0,), (12.0,)), (0.0,), (8.0,)),  # ends half a voxel off
        (Roi((0.0, 0.0), (8.0, 8.0)), (0.0, 1.0), (8.0, 8.0)),  # the grid is shifted
        (Roi((1e6 + 0.5,), (8.0,)), (0.0,), (1.0,)),  # far from the origin, still a fraction
    ],
)
def test_boxes_off_the_grid_are_refused(
    roi: Roi, origin: tuple[float, ...], voxel_size: tuple[float, ...]
) -> None:
    with pytest.raises(ValueError, match=r"^ROI \[.*\] nm is not aligned with the voxel grid"):
        roi.to_slices(origin, voxel_size)


def test_a_grid_of_other_axes_is_refused() -> None:
    with pytest.raises(ValueError, match="has 2 axes; the grid"):
        Roi((0.0, 0.0), (8.0, 8.0)).to_slices((0.0,), (8.0,))
