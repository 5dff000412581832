"""Voxel-wise sum of several arrays (DaCapo's SumArray)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.combined import CombinedArray


class SumArray(CombinedArray):
    """The sum of the sources, in their common dtype.

    Args:
        sources: arrays on one grid with the same channels.

    """

    def __init__(self, sources: Sequence[Array]) -> None:
        super().__init__(sources, "sum")
        channels = {s.num_channels for s in self.sources}
        if len(channels) > 1:
            raise ValueError(f"{self.where}: sources have different channels {channels}")

    @property
    def num_channels(self) -> int | None:
        """The sources' channels."""
        return self.sources[0].num_channels

    @property
    def dtype(self) -> np.dtype:
        """The sources' common dtype."""
        return np.result_type(*[s.dtype for s in self.sources])

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        out = self.sources[0]._read(index).astype(self.dtype)
        for source in self.sources[1:]:
            out += source._read(index)
        return out
