"""Running a block worker over every block: in this process or on a Dask cluster.

:func:`run_blocks` runs a worker on every block not yet in a ledger, in this process
(a staged worker pipelined: the next blocks' inputs are read and the last ones
written while blocks compute) or on a Dask cluster (a LocalCluster with N workers,
or any scheduler address, e.g. one started by dask-jobqueue on SLURM), as an
:class:`~dacapo_hydra.inference.options.Execution` says; :func:`open_client` opens
one cluster for all passes of a command. Blocks are submitted in a bounded window,
so the driver's state is the cluster's size, not the volume's.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psutil
from tqdm.auto import tqdm

from dacapo_hydra.devices import device_cluster
from dacapo_hydra.inference.blocks import Block, BlockResult, StagedWorker
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
class _Raised:
    """An `OSError` a Dask task returned instead of raising (see :func:`_call`)."""

    error: OSError


def _call(block: Block, worker: Callable[[Block], int]) -> int | _Raised:
    """`worker(block)`, as a Dask task whose worker argument is a scattered future.

    An `OSError` (a full disk, a file gone) is what the machine did, not a bug: it is
    returned, for the driver to raise and the command to report in one line, instead
    of the worker logging the failed task with its traceback besides.
    """
    try:
        return worker(block)
    except OSError as error:
        return _Raised(error)


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


def _voxels(result: int | BlockResult) -> int:
    return result.voxels if isinstance(result, BlockResult) else int(result)


@contextmanager
def open_client(execution: Execution | None, client: Any = None) -> Iterator[Any]:
    """A Dask client for every pass of a command (None in this process).

    A LocalCluster of `execution.workers` processes (GPUs: one each) is started once
    and closed at the end; with `execution.scheduler`, that scheduler's workers. A
    `client` given is used as it is and left open.
    """
    execution = execution or Execution()
    if client is not None or execution.in_process:
        yield client
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
            # Any free port: the scheduler's HTTP server starts even without a
            # dashboard, and warns when Dask's default port is taken.
            dashboard_address=":0",
        )
    client = Client(execution.scheduler or cluster)
    try:
        yield client
    except Exception:
        # The command reports what went wrong in one line; what the workers and nannies
        # say about the work cancelled as the cluster closes is noise now. (A stop signal
        # is a KeyboardInterrupt, not caught here: the whole job, workers included, is
        # stopping, and the signal's handler quiets this process.)
        _quiet_cluster(client)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _quiet_cluster(client: Any) -> None:
    """Dask's loggers in this process and on the client's workers, errors only."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with suppress(Exception):  # a worker already gone has nothing to say
        client.run(_quiet_worker)


def _quiet_worker() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


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
        result = future.result()
        if isinstance(result, _Raised):
            raise result.error
        finished(block_of.pop(future.key), result)
        following = next(todo, None)
        if following is not None:
            nxt = client.submit(_call, following, worker=shipped, pure=False)
            block_of[nxt.key] = following
            running.add(nxt)


class _Progress:
    """What :func:`run_blocks` counts as blocks finish: voxels, blocks, the ledger, the bar."""

    def __init__(self, ledger: Any, bar: tqdm) -> None:
        self.ledger = ledger
        self.bar = bar
        self.started = time.perf_counter()
        self.voxels = 0
        self.count = 0

    def finished(self, block: Block, result: Any) -> None:
        """Count a block `process` returned, record it in the ledger and advance the bar."""
        self.voxels += _voxels(result)
        self.count += 1
        if self.ledger is not None:
            self.ledger.record(block, result)
        self.bar.update()
        rate = self.voxels / (time.perf_counter() - self.started)
        self.bar.set_postfix(voxels_per_s=f"{rate:.3g}")


def _dispatch(
    process: Callable[[Block], Any],
    todo: Iterator[Block],
    finished: Callable[[Block, Any], None],
    execution: Execution,
    client: Any,
) -> None:
    """Run the blocks where `execution` and `client` say (see :func:`run_blocks`)."""
    if execution.in_process and client is None and isinstance(process, StagedWorker):
        _pipelined(process, todo, finished, IN_PROCESS_THREADS)
    elif execution.in_process and client is None:
        _in_threads(process, todo, finished)
    elif client is not None:
        _on_dask(client, process, todo, finished)
    else:
        with open_client(execution) as own:
            _on_dask(own, process, todo, finished)


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
        ledger: records finished blocks (a :class:`~dacapo_hydra.inference.ledgers.BlockLog`, or a
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
    progress = _Progress(
        ledger,
        tqdm(
            total=None if total is None else max(0, total - done),
            desc=description,
            unit="block",
            disable=not execution.progress,
        ),
    )
    try:
        _dispatch(process, todo, progress.finished, execution, client)
    finally:
        if ledger is not None and hasattr(ledger, "close"):
            ledger.close()
        progress.bar.close()
    seconds = time.perf_counter() - progress.started
    return {
        "blocks": progress.count,
        "voxels": progress.voxels,
        "seconds": seconds,
        "voxels_per_s": progress.voxels / max(seconds, 1e-9),
        "driver_rss_mb": psutil.Process().memory_info().rss / 2**20,
    }
