"""Blockwise processing of volumes larger than memory.

A :class:`BlockGrid` tiles a world ROI into blocks that each write one region and
read it grown by a context; a :class:`BlockLedger` records finished blocks durably
so a rerun does only the missing ones; a :class:`BlockWorker` does one block and
travels to Dask workers as paths, opening its arrays there (a :class:`StagedWorker`
in three stages: read, compute, write); :func:`run_blocks` runs a worker on every
block in-process (a staged one pipelined: the next blocks' inputs are read and the
last ones written while blocks compute) or on a Dask cluster (a LocalCluster with
N workers, or any scheduler address, e.g. one started by dask-jobqueue on SLURM),
as an :class:`~dacapo_hydra.inference.options.Execution` says.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from tqdm.auto import tqdm

from dacapo_hydra.data.roi import Roi
from dacapo_hydra.devices import device_cluster
from dacapo_hydra.inference.options import Execution

log = logging.getLogger(__name__)

# Blocks in flight when running in this process (computing, for a staged worker).
IN_PROCESS_THREADS = 2
# A staged worker's blocks read ahead, and being written, beyond those computing.
READ_AHEAD = 1
WRITE_BEHIND = 1
# Dask tasks in flight per worker: enough to keep each busy, few enough to stay small.
WINDOW_PER_WORKER = 4


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


class BlockLedger:
    """Durable record of finished blocks: one empty file per block in `path`.

    A block is marked only after its output is written, and the marker is
    created atomically (write to a temporary name, then rename), so a kill at
    any moment leaves either a finished block or none.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def is_done(self, block: Block) -> bool:
        """Whether `block` finished in this or an earlier run."""
        return (self.path / block.name).exists()

    def mark_done(self, block: Block) -> None:
        """Record `block` as finished."""
        tmp = self.path / f".{block.name}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / block.name)

    def count(self) -> int:
        """Finished blocks."""
        return sum(1 for p in self.path.iterdir() if not p.name.startswith("."))

    def record(self, block: Block, result: Any) -> None:
        """Record `block` as finished (its result is in the output it wrote)."""
        self.mark_done(block)

    def close(self) -> None:
        """Nothing is buffered."""


class BlockLog:
    """Durable record of finished blocks of a grid in one append-only file.

    The driver appends each finished block's C-order position as 8 bytes and
    flushes it to the operating system at once, so a `kill -9` of the driver loses
    nothing it recorded; a torn last record (a machine crash) is ignored. Millions
    of blocks cost one file and 8 bytes each, not a file each
    (:class:`BlockLedger`'s way), and loading is one read into a bitmap of the grid.
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


def _call(block: Block, worker: Callable[[Block], int]) -> int:
    """`worker(block)`, as a Dask task whose worker argument is a scattered future."""
    return worker(block)


def _then(future: Future, pool: ThreadPoolExecutor, fn: Callable[[Any], Any]) -> Future:
    """A future of `fn(future.result())`, run on `pool` once `future` is done."""
    out: Future = Future()

    def settle(done: Future) -> None:
        if done.cancelled():
            out.set_exception(CancelledError())
        elif done.exception() is not None:
            out.set_exception(done.exception())
        else:
            out.set_result(done.result())

    def start(done: Future) -> None:
        if done.cancelled() or done.exception() is not None:
            settle(done)
            return
        try:
            pool.submit(fn, done.result()).add_done_callback(settle)
        except RuntimeError as error:  # the pool was shut down: another block failed
            out.set_exception(error)

    future.add_done_callback(start)
    return out


def _pipelined(
    worker: StagedWorker[Any, Any, Any],
    todo: Iterable[Block],
    finished: Callable[[Block, Any], None],
    in_flight: int = IN_PROCESS_THREADS,
) -> None:
    """Run a staged worker's blocks: one thread reads ahead, `in_flight` compute, one writes.

    At most `in_flight + READ_AHEAD + WRITE_BEHIND` blocks are in memory; `finished`
    is called (on this thread) once a block is written.
    """
    worker.opened  # noqa: B018 - open once here, not racing in the stage threads
    reads = ThreadPoolExecutor(1, "read")
    computes = ThreadPoolExecutor(in_flight, "compute")
    writes = ThreadPoolExecutor(1, "write")
    pending: dict[Future, Block] = {}
    queue = iter(todo)

    def admit() -> None:
        block = next(queue, None)
        if block is not None:
            loaded = reads.submit(worker.load, block)
            computed = _then(loaded, computes, lambda x, b=block: worker.compute(b, x))
            pending[_then(computed, writes, lambda y, b=block: worker.store(b, y))] = block

    try:
        for _ in range(in_flight + READ_AHEAD + WRITE_BEHIND):
            admit()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                finished(pending.pop(future), future.result())
                admit()
    finally:
        for pool in (reads, computes, writes):
            pool.shutdown(wait=True, cancel_futures=True)


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


def _voxels(result: int | BlockResult) -> int:
    return result.voxels if isinstance(result, BlockResult) else int(result)


@contextmanager
def open_client(execution: Execution | None) -> Iterator[Any]:
    """A Dask client for every pass of a command (None in this process).

    A LocalCluster of `execution.workers` processes (GPUs: one each) is started once
    and closed at the end; with `execution.scheduler`, that scheduler's workers.
    """
    execution = execution or Execution()
    if execution.in_process:
        yield None
        return
    from dask.distributed import Client, LocalCluster

    cluster = None
    if execution.scheduler is None and execution.devices:
        cluster = device_cluster(execution.workers, execution.devices)
    elif execution.scheduler is None:
        cluster = LocalCluster(
            n_workers=execution.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    client = Client(execution.scheduler or cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _in_threads(
    process: Callable[[Block], Any], todo: Iterator[Block], finished: Callable[[Block, Any], None]
) -> None:
    """Two blocks in flight on threads.

    One reads or writes zarr (codecs release the GIL) while the other computes, so I/O
    hides behind the computation.
    """
    with ThreadPoolExecutor(IN_PROCESS_THREADS) as pool:
        block_of = {pool.submit(process, b): b for b in itertools.islice(todo, IN_PROCESS_THREADS)}
        while block_of:
            done, _ = wait(list(block_of), return_when=FIRST_COMPLETED)
            for future in done:
                finished(block_of.pop(future), future.result())
                following = next(todo, None)
                if following is not None:
                    block_of[pool.submit(process, following)] = following


def _on_dask(
    client: Any,
    process: Callable[[Block], Any],
    todo: Iterator[Block],
    finished: Callable[[Block, Any], None],
) -> None:
    """The blocks as Dask tasks, at most :data:`WINDOW_PER_WORKER` per worker at a time.

    The window keeps the scheduler's task table and the driver's bookkeeping the size
    of the cluster, not of the volume (millions of blocks at 10^12 voxels).
    """
    from dask.distributed import as_completed

    # Scattered once, so every task on a Dask worker gets that worker's one copy and
    # what it opened (the model, the arrays); mapping `process` itself unpickles a
    # fresh copy per task, which reopens everything per block. Scattering needs a
    # worker (a SLURM cluster's may still be queued); workers joining later fetch the
    # copy from one that has it.
    client.wait_for_workers(1)
    shipped = client.scatter(process, broadcast=True, hash=False)
    window = WINDOW_PER_WORKER * max(1, len(client.scheduler_info().get("workers", {})))
    block_of: dict[str, Block] = {}
    running = as_completed()
    for block in itertools.islice(todo, window):
        future = client.submit(_call, block, worker=shipped, pure=False)
        block_of[future.key] = block
        running.add(future)
    for future in running:
        finished(block_of.pop(future.key), future.result())
        following = next(todo, None)
        if following is not None:
            nxt = client.submit(_call, following, worker=shipped, pure=False)
            block_of[nxt.key] = following
            running.add(nxt)


def run_blocks(
    process: Callable[[Block], Any],
    blocks: Iterable[Block],
    ledger: Any = None,
    execution: Execution | None = None,
    description: str = "blocks",
    *,
    total: int | None = None,
    client: Any = None,
) -> dict[str, float]:
    """Run `process` on every block not yet in `ledger`; return throughput figures.

    Args:
        process: does one block and returns the voxels it wrote, or a
            :class:`BlockResult` (a :class:`BlockWorker`, for Dask). A block is
            recorded in the ledger here once `process` returned, so a kill in between
            only means the (idempotent) block is done again.
        blocks: all blocks, possibly a lazy iterable (a grid); finished ones (per
            `ledger`) are skipped.
        ledger: records finished blocks (:class:`BlockLedger`, :class:`BlockLog`, or a
            graph table's writer), or None to do them all.
        execution: where the blocks run (default: in this process, two blocks in
            flight on threads, so `process` must be thread-safe for distinct blocks).
        description: progress-bar label.
        total: the blocks' number, for the progress bar (default: `len(blocks)`).
        client: a Dask client shared by several passes (:func:`open_client`);
            default: one opened for this call when `execution` is not in process.

    """
    execution = execution or Execution()
    if total is None:
        total = len(blocks) if isinstance(blocks, Sized) else None
    done = ledger.count() if ledger is not None and hasattr(ledger, "count") else 0
    if done:
        log.info("%d blocks already done", done)
    todo = (b for b in blocks if ledger is None or not ledger.is_done(b))
    started = time.perf_counter()
    voxels = 0
    bar = tqdm(
        total=None if total is None else max(0, total - done),
        desc=description,
        unit="block",
        disable=not execution.progress,
    )

    count = 0

    def finished(block: Block, result: Any) -> None:
        nonlocal voxels, count
        voxels += _voxels(result)
        count += 1
        if ledger is not None:
            ledger.record(block, result)
        bar.update()
        bar.set_postfix(voxels_per_s=f"{voxels / (time.perf_counter() - started):.3g}")

    try:
        if execution.in_process and client is None and isinstance(process, StagedWorker):
            _pipelined(process, todo, finished, IN_PROCESS_THREADS)
        elif execution.in_process and client is None:
            _in_threads(process, todo, finished)
        elif client is not None:
            _on_dask(client, process, todo, finished)
        else:
            with open_client(execution) as own:
                _on_dask(own, process, todo, finished)
    finally:
        if ledger is not None and hasattr(ledger, "close"):
            ledger.close()
        bar.close()
    seconds = time.perf_counter() - started
    return {
        "blocks": count,
        "voxels": voxels,
        "seconds": seconds,
        "voxels_per_s": voxels / max(seconds, 1e-9),
    }
