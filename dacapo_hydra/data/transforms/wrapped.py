"""A transform of one source array that keeps its grid."""

from __future__ import annotations

import numpy as np

from dacapo_hydra.data.array import Array


class WrappedArray(Array):
    """Base of transforms that map one source's voxels to new voxels on the same grid.

    Args:
        source: the array transformed.
        name: the transform's name, for messages (`normalize(container:dataset)`).

    """

    def __init__(self, source: Array, name: str) -> None:
        super().__init__(source.voxel_size, source.offset, f"{name}({source.where})")
        self.source = source

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The source's spatial shape."""
        return self.source.spatial_shape

    @property
    def num_channels(self) -> int | None:
        """The source's channels."""
        return self.source.num_channels

    @property
    def dtype(self) -> np.dtype:
        """The source's dtype."""
        return self.source.dtype

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        return self.apply(self.source._read(index))

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Transform the source's voxels (identity here)."""
        return data
