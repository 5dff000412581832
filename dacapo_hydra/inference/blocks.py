"""Blocks of volumes larger than memory, and the workers that do one block each.

A :class:`~dacapo_hydra.model.grid.BlockGrid` tiles a world ROI into blocks that each
write one region and read it grown by a context; a :class:`BlockWorker` does one block
and travels to Dask workers as paths, opening its arrays there (a :class:`StagedWorker`
in three stages: read, compute, write). Ledgers of finished blocks are
:mod:`~dacapo_hydra.inference.ledgers`'; running workers over a grid is
:mod:`~dacapo_hydra.inference.schedule`'s.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

# The grid lives with the model (in-memory prediction tiles with it too); the blockwise
# passes import it from here, beside their workers.
from dacapo_hydra.model.grid import Block as Block
from dacapo_hydra.model.grid import BlockGrid as BlockGrid

Opened = TypeVar("Opened")
# Held while a worker opens, so threads sharing it (a Dask worker's) open it once.
_OPENING = threading.Lock()


class BlockWorker(ABC, Generic[Opened]):
    """Does one block (:meth:`__call__`, returning the voxels it wrote); picklable for Dask.

    A worker holds paths and settings, never open arrays or models: it opens what it
    reads and writes (:meth:`open`) on first use in each process, and a pickled
    copy leaves them behind, so each Dask worker opens its own once.
    """

    _opened: Opened | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_opened", None)
        return state

    @abstractmethod
    def open(self) -> Opened:
        """Open the arrays this worker reads and writes."""

    @property
    def opened(self) -> Opened:
        """What :meth:`open` gave, opened once per process (by whichever thread asks first)."""
        if self._opened is None:
            with _OPENING:
                if self._opened is None:
                    self._opened = self.open()
        return self._opened

    @abstractmethod
    def __call__(self, block: Block) -> int:
        """Do one block; return the voxels written."""


Loaded = TypeVar("Loaded")
Computed = TypeVar("Computed")


class StagedWorker(BlockWorker[Opened], Generic[Opened, Loaded, Computed]):
    """A block worker in three stages, which :func:`run_blocks` overlaps in this process.

    :meth:`load` reads a block's input (I/O and decompression), :meth:`compute` runs
    the model, :meth:`store` writes the result and returns the voxels written. Each
    stage must be thread-safe for distinct blocks.
    """

    @abstractmethod
    def load(self, block: Block) -> Loaded:
        """Read the block's input."""

    @abstractmethod
    def compute(self, block: Block, loaded: Loaded) -> Computed:
        """Compute the block's result from its input."""

    @abstractmethod
    def store(self, block: Block, computed: Computed) -> int:
        """Write the block's result; return the voxels written."""

    def __call__(self, block: Block) -> int:
        """All three stages, one after the other (on a Dask worker)."""
        return self.store(block, self.compute(block, self.load(block)))


@dataclass
class BlockResult:
    """What a block worker returns besides the output it wrote: rows for a ledger's tables.

    Attributes:
        voxels: voxels the block wrote.
        tables: rows the block adds to tables (e.g. the region graph's `nodes` and
            `edges`), which the ledger stores with the record that the block is done.

    """

    voxels: int
    tables: dict[str, Any]
