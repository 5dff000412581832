"""Property: reading a ROI with padding equals padding the whole volume, then slicing.

`Array.read_padded` reads only what a ROI needs from a zarr array on disk, however
far the ROI leaves the array; whatever the shapes, chunks, voxel grid and ROI, the
result is `numpy.pad` of the whole array (same mode) cut at the ROI.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dacapo_hydra.data.array import PAD_MODES, ZarrArray
from dacapo_hydra.data.roi import Roi

VOXEL_SIZES = (1.0, 4.0, 8.0, 0.5, 3.24, 0.3)
DTYPES = ("uint8", "int16", "float32")
FILL = 7.0


@dataclass(frozen=True)
class Volume:
    """An array to write: data (optional leading channel axis), chunks and its voxel grid."""

    data: np.ndarray
    dims: int
    chunks: tuple[int, ...]
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]

    @property
    def spatial(self) -> tuple[int, ...]:
        """Spatial shape in voxels."""
        return self.data.shape[-self.dims :]

    def open_on_disk(self, folder: Path) -> ZarrArray:
        """Write the data as a zarr array in `folder` and open it in world units."""
        root = zarr.open_group(str(folder / "vol.zarr"), mode="w")
        array = root.create_array(
            "raw", shape=self.data.shape, chunks=self.chunks, dtype=self.data.dtype
        )
        array[...] = self.data
        return ZarrArray.open(
            folder / "vol.zarr", "raw", voxel_size=self.voxel_size, offset=self.offset
        )


@st.composite
def volumes(draw: st.DrawFn) -> Volume:
    """1 to 3 spatial axes of 1 to 7 voxels, any chunks, voxel size and offset."""
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(dims))
    channels = draw(st.sampled_from([(), (1,), (2,)]))
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from(DTYPES))
    data = np.random.default_rng(seed).integers(0, 100, channels + shape).astype(dtype)
    voxel_size = tuple(draw(st.sampled_from(VOXEL_SIZES)) for _ in range(dims))
    offset = tuple(draw(st.integers(-5, 5)) * v for v in voxel_size)
    return Volume(data, dims, channels + chunks, voxel_size, offset)


@st.composite
def padded_reads(draw: st.DrawFn) -> tuple[Volume, str, list[int], list[int]]:
    """A volume, a pad mode and a ROI (voxel begin and size on the volume's grid) that
    overlaps the volume for reflect and edge, and lies anywhere for constant."""
    volume = draw(volumes())
    mode = draw(st.sampled_from(PAD_MODES))
    begin, size = [], []
    for s in volume.spatial:
        n = draw(st.integers(1, 3 * s + 4))
        low, high = (-n - 4, s + 4) if mode == "constant" else (1 - n, s - 1)
        begin.append(draw(st.integers(low, high)))
        size.append(n)
    return volume, mode, begin, size


def world(array: ZarrArray, begin: list[int], size: list[int]) -> Roi:
    """The world ROI of voxels [begin, begin + size) of `array`'s grid."""
    return Roi(
        tuple(o + b * v for o, b, v in zip(array.offset, begin, array.voxel_size, strict=True)),
        tuple(n * v for n, v in zip(size, array.voxel_size, strict=True)),
    )


def padded_whole(volume: Volume, begin: list[int], size: list[int], mode: str) -> np.ndarray:
    """numpy.pad of the whole array, wide enough for the ROI, cut at the ROI."""
    widths = [max(0, -b, b + n - s) for b, n, s in zip(begin, size, volume.spatial, strict=True)]
    pad = [(0, 0)] * (volume.data.ndim - volume.dims) + [(w, w) for w in widths]
    kwargs = {"constant_values": FILL} if mode == "constant" else {}
    padded = np.pad(volume.data, pad, mode=mode, **kwargs)
    index = tuple(slice(b + w, b + w + n) for b, n, w in zip(begin, size, widths, strict=True))
    return padded[(Ellipsis, *index)]


# Found by this property: on a 3.24 nm grid the part of the ROI inside the array ended a
# float ulp past the array's end, and `read` refused it as outside.
REGRESSION = (
    Volume(np.arange(6, dtype=np.uint8), 1, (6,), (3.24,), (0.0,)),
    "constant",
    [1],
    [6],
)


@settings(max_examples=30, deadline=None, database=None)
@given(padded_reads())
@example(REGRESSION)
def test_padded_read_equals_padding_the_whole_volume(
    case: tuple[Volume, str, list[int], list[int]],
) -> None:
    """read_padded(roi, mode) == numpy.pad(whole, mode)[roi], the dtype kept."""
    volume, mode, begin, size = case
    with tempfile.TemporaryDirectory() as folder:
        array = volume.open_on_disk(Path(folder))
        got = array.read_padded(world(array, begin, size), mode, FILL)
    assert got.dtype == volume.data.dtype
    np.testing.assert_array_equal(got, padded_whole(volume, begin, size, mode))


@settings(max_examples=10, deadline=None, database=None)
@given(volumes(), st.sampled_from(("reflect", "edge")), st.data())
def test_reflect_and_edge_refuse_a_roi_outside_the_array(
    volume: Volume, mode: str, data: st.DataObject
) -> None:
    """With nothing to mirror or repeat, reflect and edge raise instead of inventing values."""
    axis = data.draw(st.integers(0, volume.dims - 1))
    begin, size = [0] * volume.dims, list(volume.spatial)
    n = size[axis]
    begin[axis] = data.draw(st.sampled_from([-n - 2, -n, n, n + 3]))
    with tempfile.TemporaryDirectory() as folder:
        array = volume.open_on_disk(Path(folder))
        with pytest.raises(ValueError, match="does not overlap"):
            array.read_padded(world(array, begin, size), mode)


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_a_box_ending_where_the_array_begins_is_refused(tmp_path: Path, mode: str) -> None:
    """Found by the property above: on a 0.3 nm grid offset by 0.3, a box ending where the
    array begins overlapped it by a float ulp (0.3 - 0.9 + 0.9 > 0.3) and was read."""
    data = np.array([[[85], [63], [51]]], np.uint8)
    volume = Volume(data, 3, (1, 1, 1), (1.0, 0.3, 1.0), (0.0, 0.3, 0.0))
    array = volume.open_on_disk(tmp_path)
    with pytest.raises(ValueError, match="does not overlap"):
        array.read_padded(world(array, [0, -3, 0], [1, 3, 1]), mode)
    constant = array.read_padded(world(array, [0, -3, 0], [1, 3, 1]), "constant", FILL)
    assert constant.shape == (1, 3, 1) and (constant == FILL).all()
