"""Groups of label ids, one channel each (DaCapo's BinarizeArray)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.wrapped import WrappedArray


class BinarizeArray(WrappedArray):
    """One uint8 channel per group of label ids: 1 where the label is in the group.

    Args:
        source: a label array without a channel axis.
        groups: channel name -> label ids; None gives one channel, `label > 0`.

    """

    def __init__(self, source: Array, groups: Mapping[str, Sequence[int]] | None = None) -> None:
        super().__init__(source, "binarize")
        if source.num_channels is not None:
            raise ValueError(f"{self.where}: binarize needs a label array without channels")
        self.groups = {str(k): [int(i) for i in v] for k, v in (groups or {}).items()}
        if groups is not None and not self.groups:
            raise ValueError(f"{self.where}: binarize groups is empty; name at least one group")

    @property
    def channel_names(self) -> list[str]:
        """One name per output channel."""
        return list(self.groups) or ["foreground"]

    @property
    def num_channels(self) -> int:
        """One channel per group."""
        return len(self.channel_names)

    @property
    def dtype(self) -> np.dtype:
        """uint8."""
        return np.dtype(np.uint8)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(groups, *spatial) membership masks."""
        if not self.groups:
            return (data > 0)[None].astype(np.uint8)
        return np.stack([np.isin(data, ids) for ids in self.groups.values()]).astype(np.uint8)
