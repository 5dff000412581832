"""Several instance label arrays merged into one (DaCapo's MergeInstancesArray)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.combined import CombinedArray


class MergeInstancesArray(CombinedArray):
    """uint64 instance labels: source k's id i becomes `i + k * id_stride`.

    The ids stay distinct across sources and are the same in every crop (they do
    not depend on which labels a crop happens to hold). Where instances of two
    sources overlap, the later source wins.

    Args:
        sources: label arrays without channel axes, on one grid.
        id_stride: id offset between consecutive sources.

    """

    def __init__(self, sources: Sequence[Array], id_stride: int = 2**32) -> None:
        super().__init__(sources, "merge_instances")
        if any(s.num_channels is not None for s in self.sources):
            raise ValueError(f"{self.where}: merge_instances needs label arrays without channels")
        self.id_stride = int(id_stride)

    @property
    def num_channels(self) -> None:
        """No channel axis."""
        return None

    @property
    def dtype(self) -> np.dtype:
        """uint64."""
        return np.dtype(np.uint64)

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        out = np.zeros(tuple(s.stop - s.start for s in index), np.uint64)
        for k, source in enumerate(self.sources):
            labels = source._read(index).astype(np.uint64)
            inside = labels > 0
            out[inside] = labels[inside] + np.uint64(k * self.id_stride)
        return out
