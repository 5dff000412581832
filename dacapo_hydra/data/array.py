"""Lazy zarr arrays addressed in world coordinates.

A :class:`ZarrArray` knows its voxel size and offset (nm) and reads any
voxel-aligned world ROI by slicing the zarr array, which touches only the chunks
that ROI overlaps: nothing is ever loaded whole. A chunk that fails to decode
(a truncated or corrupt file) is named in a one-line
:class:`~dacapo_hydra.errors.DataError`, as is a metadata file that is not JSON.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence, ValuesView
from pathlib import Path

import numpy as np
import zarr
from zarr.errors import MetadataValidationError

from dacapo_hydra.data.chunk_cache import ChunkCache
from dacapo_hydra.data.locate import open_node
from dacapo_hydra.data.ome import SPATIAL_AXES
from dacapo_hydra.data.roi import Roi, as_tuple
from dacapo_hydra.data.store import full_box, not_json, undecodable_chunk, unreadable
from dacapo_hydra.errors import DataError

log = logging.getLogger(__name__)

PAD_MODES = ("reflect", "constant", "edge")


class Array(ABC):
    """A lazy spatial array with a voxel size and offset in nm, read by world ROI.

    Subclasses say what they hold (:attr:`spatial_shape`, :attr:`num_channels`,
    :attr:`dtype`) and read an inside ROI (:meth:`read`); padding, the ROI and the
    voxel arithmetic are shared.

    Args:
        voxel_size: size of a voxel per spatial axis, in nm.
        offset: world position of the first voxel's corner, in nm.
        where: human-readable location (`container:dataset`) for messages.

    """

    def __init__(self, voxel_size: Sequence[float], offset: Sequence[float], where: str) -> None:
        self.where = where
        self.voxel_size = as_tuple(voxel_size, f"{where} voxel_size")
        self.offset = as_tuple(offset, f"{where} offset")
        if len(self.voxel_size) != len(self.offset):
            raise ValueError(
                f"{where}: voxel_size {self.voxel_size} and offset {self.offset} differ in length"
            )
        if any(v <= 0 for v in self.voxel_size):
            raise ValueError(f"{where}: voxel_size must be positive, got {self.voxel_size}")

    @property
    @abstractmethod
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes, in voxels."""

    @property
    @abstractmethod
    def num_channels(self) -> int | None:
        """Channels of a leading channel axis, or None if the array has none."""

    @property
    @abstractmethod
    def dtype(self) -> np.dtype:
        """The data type :meth:`read` returns."""

    @abstractmethod
    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        """Voxels at spatial `index` (inside the array), channel axis kept."""

    @property
    def dims(self) -> int:
        """Number of spatial dimensions."""
        return len(self.voxel_size)

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the spatial axes."""
        return (
            SPATIAL_AXES[self.dims]
            if self.dims in SPATIAL_AXES
            else tuple(f"d{i}" for i in range(self.dims))
        )

    @property
    def roi(self) -> Roi:
        """The world box the array covers."""
        return Roi(
            self.offset,
            tuple(s * v for s, v in zip(self.spatial_shape, self.voxel_size, strict=True)),
        )

    def to_voxels(self, roi: Roi) -> tuple[slice, ...]:
        """Voxel slices of a world ROI on this array's voxel grid (:meth:`Roi.to_slices`).

        Raises:
            ValueError: naming the array, where the ROI is off its grid.

        """
        try:
            return roi.to_slices(self.offset, self.voxel_size)
        except ValueError as err:
            raise ValueError(f"{self.where}: {err}") from None

    def snap(self, roi: Roi) -> Roi:
        """The smallest box on this array's voxel grid that contains `roi`."""
        vs = np.asarray(self.voxel_size)
        first = np.floor((np.subtract(roi.begin, self.offset)) / vs + 1e-6)
        last = np.ceil((np.subtract(roi.end, self.offset)) / vs - 1e-6)
        return Roi(
            tuple((np.asarray(self.offset) + first * vs).tolist()),
            tuple(((last - first) * vs).tolist()),
        )

    def arrays_within(self) -> Iterator[Array]:
        """The array itself and, for a transform, every array it is computed from (depth first).

        Found among the attributes (an array, or a list or dict of arrays), so a
        transform needs no code of its own for it.
        """
        yield self
        for value in vars(self).values():
            items = value.values() if isinstance(value, dict) else value
            for item in items if isinstance(items, (list, tuple, ValuesView)) else [value]:
                if isinstance(item, Array):
                    yield from item.arrays_within()

    def read(self, roi: Roi) -> np.ndarray:
        """Read a world ROI that lies inside the array (channel axis kept if present)."""
        # Inside up to rounding: a box cut from the array's ROI (an intersection) can end
        # a float ulp past it on a grid such as 3.24 nm; to_voxels rounds it back.
        tolerance = tuple(1e-6 * v for v in self.voxel_size)
        if not self.roi.grow(tolerance).contains(roi):
            raise ValueError(f"{self.where}: ROI {roi} is outside the array's ROI {self.roi}")
        return self._read(self.to_voxels(roi))

    def read_padded(self, roi: Roi, mode: str = "reflect", value: float = 0) -> np.ndarray:
        """Read a world ROI, padding where it leaves the array.

        Args:
            roi: the world box, on this array's voxel grid.
            mode: `reflect`, `edge` or `constant` (with `value`), as numpy.pad.
            value: fill value for `constant`.

        """
        if mode not in PAD_MODES:
            raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
        inner = self.roi.intersect(roi)
        # Empty on the voxel grid: a box that ends where the array begins can overlap
        # it by a float ulp (0.3 + 3 * -0.3 + 3 * 0.3 > 0.3), which holds no voxel.
        if any(s < v / 2 for s, v in zip(inner.shape, self.voxel_size, strict=True)):
            if mode != "constant":
                raise ValueError(
                    f"{self.where}: ROI {roi} does not overlap the array's ROI {self.roi}"
                )
            shape = tuple(
                int(round(s / v)) for s, v in zip(roi.shape, self.voxel_size, strict=True)
            )
            channels = () if self.num_channels is None else (self.num_channels,)
            return np.full(channels + shape, value, self.dtype)
        if mode == "constant":
            data = self.read(inner)
            before = np.round(np.subtract(inner.begin, roi.begin) / self.voxel_size).astype(int)
            after = np.round(np.subtract(roi.end, inner.end) / self.voxel_size).astype(int)
            if not (before.any() or after.any()):
                return data
            widths = [(0, 0)] * (data.ndim - self.dims) + list(
                zip(before.tolist(), after.tolist(), strict=True)
            )
            return np.pad(data, widths, mode="constant", constant_values=value)
        # Reflect/edge: every voxel outside takes the value the whole volume, padded,
        # would have there, whatever the ROI. Padding only the part read (np.pad) would
        # differ between overlapping ROIs, so blockwise results would depend on blocks.
        if self.roi.contains(roi):
            return self.read(roi)
        sources = [
            _padded_indices(s.start, s.stop, length, mode)
            for s, length in zip(self.to_voxels(roi), self.spatial_shape, strict=True)
        ]
        lows = [int(s.min()) for s in sources]
        box = tuple(slice(lo, int(s.max()) + 1) for lo, s in zip(lows, sources, strict=True))
        data = self._read(box)
        # Gather only along padded axes, one at a time (np.ix_ over all axes is slow).
        channels = data.ndim - self.dims
        for axis, (s, lo) in enumerate(zip(sources, lows, strict=True)):
            index = s - lo
            if not np.array_equal(index, np.arange(len(index))):
                data = np.take(data, index, axis=channels + axis)
        return data


class ZarrArray(Array):
    """A zarr array with a voxel size and offset in nm, read by world ROI.

    Args:
        array: the opened zarr array.
        voxel_size: size of a voxel per spatial axis, in nm.
        offset: world position of the first voxel's corner, in nm.
        where: human-readable location (`container:dataset`) for messages.
        sparse: whether chunks may be missing from the store (read as the fill
            value); None leaves it to the array's role in a dataset (raw must be
            dense, ground truth and masks may be sparse: see
            :mod:`dacapo_hydra.data.checks`).

    :attr:`cache` (a :class:`~dacapo_hydra.data.chunk_cache.ChunkCache`, None by
    default) keeps decoded chunks between reads; set it only on arrays nothing
    writes while they are read (the training sampler does, for its datasets).

    """

    cache: ChunkCache | None = None

    def __init__(
        self,
        array: zarr.Array,
        voxel_size: Sequence[float],
        offset: Sequence[float],
        where: str,
        sparse: bool | None = None,
    ) -> None:
        super().__init__(voxel_size, offset, where)
        self.array = array
        self.sparse = sparse
        extra = array.ndim - self.dims
        if extra not in (0, 1):
            raise ValueError(
                f"{where}: array has {array.ndim} axes but voxel_size has {self.dims}; "
                "expected the spatial axes plus at most one leading channel axis"
            )

    @classmethod
    def open(
        cls,
        container: str | Path,
        dataset: str,
        voxel_size: Sequence[float] | None = None,
        offset: Sequence[float] | None = None,
        scale_voxel_size: Sequence[float] | None = None,
        sparse: bool | None = None,
    ) -> ZarrArray:
        """Open `dataset` inside the zarr `container`.

        The voxel size and offset come from OME-NGFF multiscale metadata (0.4 or 0.5),
        from `voxel_size`/`resolution` and `offset` attributes, or from the arguments
        (which take precedence). Where `dataset` is a multiscale group, the level
        whose voxel size equals `scale_voxel_size` is picked (the first by default).
        Every level of an image starts at the same offset: OME's pixel-centre
        translations of downsampled levels are converted, and files whose levels all
        share one translation (written before that convention) read as they always
        did (:func:`~dacapo_hydra.data.ome.parse_multiscale`). `sparse` is kept
        as :attr:`sparse`.

        Raises:
            FileNotFoundError: no such container.
            KeyError: no such dataset in it.
            ValueError: not a zarr group, or no voxel size.
            DataError: a metadata file (`zarr.json`, `.zarray`, `.zattrs`, ...) is
                not JSON (the message names the file), or not zarr metadata.

        """
        path = Path(container)
        if not path.exists():
            raise FileNotFoundError(f"zarr container {container!r} does not exist")
        try:
            node, where, meta_vs, meta_off = open_node(path, dataset, scale_voxel_size)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(not_json(path, dataset, err)) from None
        except MetadataValidationError as err:  # JSON, but not zarr metadata
            raise DataError(f"{container}:{dataset}: invalid zarr metadata ({err})") from None
        vs = voxel_size if voxel_size is not None else meta_vs
        if vs is None:
            raise ValueError(
                f"{where} has no voxel size metadata (OME-NGFF or voxel_size attribute); "
                "give voxel_size (nm per axis) in the datasplit YAML"
            )
        dims = len(vs)
        off = offset if offset is not None else (meta_off or (0.0,) * dims)
        return cls(node, vs, off, where, sparse)

    @property
    def num_channels(self) -> int | None:
        """Channels of a leading channel axis, or None if the array has none."""
        return self.array.shape[0] if self.array.ndim > self.dims else None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes, in voxels."""
        return tuple(self.array.shape[-self.dims :])

    @property
    def dtype(self) -> np.dtype:
        """The stored data type."""
        return self.array.dtype

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        # Slicing a zarr array decodes only the chunks the slices touch.
        full = (slice(None),) * (self.array.ndim - self.dims) + index
        try:
            if self.cache is not None:
                return self.cache.read(self.array, full)
            return np.asarray(self.array[full])
        except MemoryError:
            raise
        except Exception as err:
            # Decoders name no file (`Zstd decompression error`): find the chunk.
            found = undecodable_chunk(self.array, full_box(self.array.shape, full))
            if found is None:
                raise
            raise DataError(unreadable(self.where, *found)) from err


def _padded_indices(start: int, stop: int, length: int, mode: str) -> np.ndarray:
    """Source index of each position in [start, stop) of an axis of `length`, padded.

    `reflect` mirrors about the first and last voxel (numpy.pad's `reflect`, repeated
    as often as needed); `edge` repeats them.
    """
    index = np.arange(start, stop)
    if mode == "edge" or length == 1:
        return np.clip(index, 0, length - 1)
    period = 2 * (length - 1)
    folded = np.mod(index, period)
    return np.where(folded < length, folded, period - folded)
