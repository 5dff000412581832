"""An array resampled to another voxel size by integer factors (DaCapo's ResampledArray)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.measure import block_reduce

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.roi import as_tuple

METHODS = ("nearest", "mean")


class ResampleArray(Array):
    """`source` on a grid of `voxel_size`, each axis an integer factor finer or coarser.

    Finer axes repeat each source voxel (nearest); coarser axes take the voxel
    nearest each new voxel's centre (`nearest`, for labels and masks) or the mean
    of the block it covers (`mean`, for intensities). Integer factors keep the
    grids aligned, so no voxel is ever half-interpolated.

    Args:
        source: the array resampled.
        voxel_size: the new voxel size, nm.
        method: `nearest` or `mean`.

    """

    def __init__(self, source: Array, voxel_size: Sequence[float], method: str = "nearest") -> None:
        where = f"resample({source.where})"
        target = as_tuple(voxel_size, f"{where} voxel_size")
        if len(target) != source.dims:
            raise ValueError(f"{where}: voxel_size {target} needs {source.dims} entries")
        if method not in METHODS:
            raise ValueError(f"{where}: method must be one of {METHODS}, got {method!r}")
        self.up: list[int] = []
        self.down: list[int] = []
        for s, t in zip(source.voxel_size, target, strict=True):
            ratio = s / t if s >= t else t / s
            if abs(ratio - round(ratio)) > 1e-6:
                raise ValueError(
                    f"{where}: voxel size {target} is not an integer factor of the source's "
                    f"{source.voxel_size}"
                )
            self.up.append(int(round(s / t)) if s >= t else 1)
            self.down.append(int(round(t / s)) if t > s else 1)
        super().__init__(target, source.offset, where)
        self.source = source
        self.method = method

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Whole new voxels inside the source."""
        return tuple(
            n * u // d
            for n, u, d in zip(self.source.spatial_shape, self.up, self.down, strict=True)
        )

    @property
    def num_channels(self) -> int | None:
        """The source's channels."""
        return self.source.num_channels

    @property
    def dtype(self) -> np.dtype:
        """The source's dtype (float32 for `mean` of an integer source)."""
        if self.method == "mean" and not np.issubdtype(self.source.dtype, np.floating):
            return np.dtype(np.float32)
        return self.source.dtype

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        src = []
        for sl, u, d in zip(index, self.up, self.down, strict=True):
            src.append(slice(sl.start // u * d, ((sl.stop - 1) // u + 1) * d))
        data = self.source._read(tuple(src))
        lead = data.ndim - self.dims
        for axis, (sl, u, d) in enumerate(zip(index, self.up, self.down, strict=True)):
            ax = lead + axis
            if d > 1 and self.method == "mean":
                block = [1] * data.ndim
                block[ax] = d
                data = block_reduce(data, tuple(block), np.mean).astype(self.dtype)
            elif d > 1:
                data = np.take(data, np.arange(d // 2, data.shape[ax], d), axis=ax)
            if u > 1:
                data = np.repeat(data, u, axis=ax)
                first = sl.start - sl.start // u * u
                data = np.take(data, np.arange(first, first + sl.stop - sl.start), axis=ax)
        return data.astype(self.dtype, copy=False)
