"""Channels combined by logical or (DaCapo's LogicalOrArray)."""

from __future__ import annotations

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.wrapped import WrappedArray


class LogicalOrArray(WrappedArray):
    """uint8 without a channel axis: 1 where any channel of the source is non-zero.

    Args:
        source: an array with a channel axis (without one, `source > 0`).

    """

    def __init__(self, source: Array) -> None:
        super().__init__(source, "logical_or")

    @property
    def num_channels(self) -> None:
        """No channel axis."""
        return None

    @property
    def dtype(self) -> np.dtype:
        """uint8."""
        return np.dtype(np.uint8)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Any channel set."""
        if self.source.num_channels is None:
            return (data != 0).astype(np.uint8)
        return np.any(data != 0, axis=0).astype(np.uint8)
