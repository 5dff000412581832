"""A constant array on another array's grid (DaCapo's ConstantArray / OnesArray)."""

from __future__ import annotations

import numpy as np

from dacapo_hydra.data.array import Array


class ConstantArray(Array):
    """`value` everywhere `like` has voxels (a mask of ones by default).

    Args:
        like: the array whose grid, ROI and channels this copies.
        value: the constant.
        dtype: its data type.
        channels: keep `like`'s channel axis (default: no channel axis).

    """

    def __init__(
        self, like: Array, value: float = 1, dtype: str = "uint8", channels: bool = False
    ) -> None:
        super().__init__(like.voxel_size, like.offset, f"constant({like.where})")
        self.like = like
        self.value = value
        self._dtype = np.dtype(dtype)
        self.channels = channels

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """`like`'s spatial shape."""
        return self.like.spatial_shape

    @property
    def num_channels(self) -> int | None:
        """`like`'s channels if `channels`, else none."""
        return self.like.num_channels if self.channels else None

    @property
    def dtype(self) -> np.dtype:
        """The given dtype."""
        return self._dtype

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        shape = tuple(s.stop - s.start for s in index)
        lead = () if self.num_channels is None else (self.num_channels,)
        return np.full(lead + shape, self.value, self._dtype)
