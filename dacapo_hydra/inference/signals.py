"""Blockwise commands stopped the way a cluster stops a job, and a full output disk.

SLURM's `scancel`, its time limit and preemption, `timeout` and a container stop send
SIGTERM to every process of the job: the command's own (the driver) and its Dask
workers'. Python's default for SIGTERM ends the driver at once, with no word and in the
middle of its cleanup. :func:`stop_signals` makes SIGTERM, SIGINT, SIGUSR1 and SIGUSR2
raise :class:`JobStopped` in the driver's main thread instead: the blocks running are
abandoned (their workers are going anyway), the ledgers are closed with every finished
block recorded (:mod:`~dacapo_hydra.inference.ledgers`), the Dask cluster is shut down,
and the command ends with one line and exit status 128 + the signal's number (143 for
SIGTERM), as a shell reports a process the signal ended. A rerun of the same command
does only the blocks not recorded, and its output equals an uninterrupted run's.

:func:`disk_full_line` words a full disk (or a quota, or the file-size limit) met while
writing the output: the folder, what was free, and that the blocks done are kept.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

# What a cluster (or a terminal) sends to stop a job.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
# "No space left", a quota, the file-size limit (`ulimit -f`): the output does not fit.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class JobStopped(KeyboardInterrupt):
    """A stop signal reached the driver (a `KeyboardInterrupt`: no `except Exception` eats it).

    Args:
        signum: the signal's number.

    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by it."""
        return 128 + self.signum


def _handle(signum: int, frame: FrameType | None) -> None:
    # The job's other signals (the whole group gets several) must not break the cleanup,
    # and the Dask cluster's complaints about workers the signal ended are noise now.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    raise JobStopped(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, a stop signal raises :class:`JobStopped` in the main thread.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    try:
        previous = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _free_bytes(path: Path) -> tuple[Path, int | None]:
    """The nearest existing folder at or above `path`, and its free bytes."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return folder, shutil.disk_usage(folder).free
    except OSError:
        return folder, None


def disk_full_line(err: OSError, output: str | Path) -> str | None:
    """One line for an output that did not fit, or None if `err` is another fault.

    Args:
        err: what the write raised.
        output: the output container the command writes (named with what was free).

    Example:
        >>> import errno
        >>> disk_full_line(OSError(errno.EACCES, "Permission denied"), "/tmp") is None
        True

    """
    if err.errno not in DISK_FULL:
        return None
    folder, free = _free_bytes(Path(output))
    shown = "unknown" if free is None else f"{free} bytes ({free / 2**20:.1f} MiB)"
    file = f" writing {err.filename}" if err.filename else ""
    return (
        f"{err.strerror or err}{file}: the output {output} (on the file system of {folder}) "
        f"has {shown} free; the blocks done are kept: free space and run the same command "
        "again to do the rest"
    )
