"""Channels of several arrays stacked, missing ones filled (DaCapo's ConcatArray)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.combined import CombinedArray


class ConcatArray(CombinedArray):
    """Named channels from several arrays; a channel without a source reads `fill`.

    Each source contributes its channels (one if it has no channel axis). A
    missing channel (source None) is filled with `fill` and reported by
    :attr:`known`, so :class:`MissingAnnotationsMask` can mask it out of the loss.

    Args:
        channels: channel name -> source array, or None where that class is missing.
        fill: value of missing channels.

    """

    def __init__(self, channels: Mapping[str, Array | None], fill: int = 0) -> None:
        present = [a for a in channels.values() if a is not None]
        super().__init__(present, "concat")
        self.channels = dict(channels)
        self.fill = fill

    @property
    def channel_names(self) -> list[str]:
        """One name per source (a multi-channel source's channels share its name)."""
        return list(self.channels)

    @property
    def known(self) -> list[bool]:
        """Per output channel: whether it has a source."""
        out: list[bool] = []
        for source in self.channels.values():
            out += [source is not None] * (1 if source is None else (source.num_channels or 1))
        return out

    @property
    def num_channels(self) -> int:
        """Sum of the sources' channels (missing ones count one)."""
        return len(self.known)

    @property
    def dtype(self) -> np.dtype:
        """The common dtype of the sources."""
        return np.result_type(*[s.dtype for s in self.sources])

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        shape = tuple(s.stop - s.start for s in index)
        parts = []
        for source in self.channels.values():
            if source is None:
                parts.append(np.full((1, *shape), self.fill, self.dtype))
                continue
            data = source._read(index)
            parts.append(data if source.num_channels is not None else data[None])
        return np.concatenate(parts).astype(self.dtype, copy=False)
