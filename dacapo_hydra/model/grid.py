"""Blocks tiling a world ROI: each writes one region and reads it grown by a context.

Prediction in memory (:func:`~dacapo_hydra.model.predict.predict_roi`) and the
blockwise passes of `inference/` (:mod:`~dacapo_hydra.inference.blocks`) share this grid,
so a block is the same region whichever runs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dacapo_hydra.data.roi import Roi


@dataclass(frozen=True)
class Block:
    """One block: the region it writes and the region it reads."""

    index: tuple[int, ...]
    write_roi: Roi
    read_roi: Roi

    @property
    def name(self) -> str:
        """A stable name, e.g. `0_2_1`."""
        return "_".join(str(i) for i in self.index)


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of `block_size` (nm) tiling `roi`, each reading `context` (nm) more per side.

    Blocks start at `roi.begin` and repeat every `block_size`; the last block of an
    axis is clipped to `roi` (it still reads a full-sized input, padded as needed),
    so every block sits at the same phase of the network's grid.
    """

    roi: Roi
    block_size: tuple[float, ...]
    context: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Blocks per axis."""
        return tuple(
            int(np.ceil(s / b - 1e-9)) for s, b in zip(self.roi.shape, self.block_size, strict=True)
        )

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    def block(self, index: Sequence[int]) -> Block:
        """The block at grid `index`."""
        begin = tuple(
            r + i * b for r, i, b in zip(self.roi.begin, index, self.block_size, strict=True)
        )
        full = Roi(begin, self.block_size)
        return Block(tuple(index), full.intersect(self.roi), full.grow(self.context))

    def __iter__(self) -> Iterator[Block]:
        for index in itertools.product(*(range(n) for n in self.shape)):
            yield self.block(index)

    def linear(self, block: Block) -> int:
        """The block's position in C order (its record in ledgers and graph tables)."""
        return int(np.ravel_multi_index(block.index, self.shape))

    def at(self, linear: int) -> Block:
        """The block at C-order position `linear`."""
        return self.block(tuple(int(i) for i in np.unravel_index(linear, self.shape)))

    def neighbours(self) -> Iterator[tuple[Block, Block, int]]:
        """Pairs of face-adjacent blocks (lower, upper, axis)."""
        for block in self:
            for axis in range(len(self.shape)):
                if block.index[axis] + 1 < self.shape[axis]:
                    upper = list(block.index)
                    upper[axis] += 1
                    yield block, self.block(upper), axis
