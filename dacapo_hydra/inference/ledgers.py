"""Durable records of finished blocks, so a rerun after a kill does only the missing ones.

A ledger answers `is_done(block)` and `count()`, takes `record(block, result)` when a
block finished, and `close()` at the end of a pass (`run_blocks` calls them on the
driver). :class:`BlockLog` keeps one file per pass; a pass that adds rows to the
region graph uses its writer (:class:`~dacapo_hydra.inference.graph.GraphWriter`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dacapo_hydra.inference.blocks import Block, BlockGrid


class BlockLog:
    """Durable record of finished blocks of a grid in one append-only file.

    The driver appends each finished block's C-order position as 8 bytes and
    flushes it to the operating system at once, so a `kill -9` of the driver loses
    nothing it recorded; a torn last record (a machine crash) is ignored. Millions
    of blocks cost one file and 8 bytes each, not a file each, and loading is one
    read into a bitmap of the grid.
    """

    def __init__(self, path: str | Path, grid: BlockGrid) -> None:
        self.path = Path(path)
        self.grid = grid
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = np.zeros(len(grid), bool)
        if self.path.exists():
            data = self.path.read_bytes()
            records = np.frombuffer(data[: len(data) // 8 * 8], "<i8")
            self.done[records[(records >= 0) & (records < len(grid))]] = True
        self._file = None

    def is_done(self, block: Block) -> bool:
        """Whether `block` finished in this or an earlier run."""
        return bool(self.done[self.grid.linear(block)])

    def record(self, block: Block, result: Any) -> None:
        """Record `block` as finished."""
        linear = self.grid.linear(block)
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - held until close()
        self._file.write(np.int64(linear).astype("<i8").tobytes())
        self._file.flush()
        self.done[linear] = True

    def count(self) -> int:
        """Finished blocks."""
        return int(self.done.sum())

    def close(self) -> None:
        """Sync and close the file."""
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
