"""How a run stops early: the MLflow status that says why, and what the caller sees.

A signal marks the run KILLED, an exception FAILED. Lightning handles both
signals inside `trainer.fit`, and :class:`StopReason` (a callback) records what it
saw through Lightning's `on_exception` hook:

- SIGINT (Ctrl-C): Lightning calls `on_exception` with the `KeyboardInterrupt`,
  then ends with `sys.exit(1)`; the run continues (`resume=true`) from its last
  periodic checkpoint. Ctrl-C may land in the middle of an MLflow write; what that
  write held is freed first (:func:`release_interrupted`), so the store takes
  the run's final status.
- SIGTERM (`kill`, SLURM preemption or time limit): Lightning's
  `_SignalConnector` notes it, and the loop raises `SIGTERMException` (a
  `SystemExit`) at the end of the current batch; `on_exception` sees it, and
  :class:`~dacapo_hydra.training.callbacks.LastCheckpoint` saves `last.ckpt` there, so
  `resume=true` continues from the iteration the signal came at.

:func:`dacapo_hydra.training.run.train` then raises :class:`RunInterrupted` (a
`KeyboardInterrupt`) for either signal; `dacapo-train` prints its one line and
exits with 128 + the signal's number (130, 143), as a shell reports a process
ended by that signal.
"""

from __future__ import annotations

import gc
import logging
import signal
import traceback

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException


def release_interrupted(exception: BaseException) -> None:
    """Free what the frames a `KeyboardInterrupt` went through still hold.

    Ctrl-C can land in the middle of an MLflow write to a sqlite store: the
    interrupted frames then hold a connection inside its write transaction, and
    every later write waits for its lock and fails (`database is locked`), the
    run's final status included. Clearing the frames' variables and collecting
    garbage closes that connection, which rolls the half-done write back.

    Args:
        exception: the interrupt, its traceback intact.

    """
    traceback.clear_frames(exception.__traceback__)
    sqlalchemy_log = logging.getLogger("sqlalchemy")
    level = sqlalchemy_log.level
    sqlalchemy_log.setLevel(logging.CRITICAL)  # "Error closing cursor" of the collected one
    try:
        gc.collect()
    finally:
        sqlalchemy_log.setLevel(level)


class StopReason(pl.Callback):
    """Records the exception Lightning stopped `fit` for (`on_exception`), if any.

    Lightning calls `on_exception` before it ends the MLflow run as failed; for
    Ctrl-C, what the interrupted frames held is freed here first
    (:func:`release_interrupted`).
    """

    def __init__(self) -> None:
        self.seen: BaseException | None = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Keep the exception; after Ctrl-C, free what the interrupted frames held."""
        self.seen = exception
        if isinstance(exception, KeyboardInterrupt):
            release_interrupted(exception)


def stop_signal(raised: BaseException, seen: BaseException | None = None) -> str | None:
    """The signal that stopped the run (`"SIGINT"`, `"SIGTERM"`, ...); None for an error.

    A `KeyboardInterrupt` that names its signal (`signal_name`, as
    :class:`~dacapo_hydra.training.process.signals.SignalStop` does) is that signal;
    another is SIGINT.

    Args:
        raised: what `train` caught (for Ctrl-C inside `fit`, Lightning's `SystemExit`).
        seen: what Lightning stopped `fit` for (:attr:`StopReason.seen`).

    Example:
        >>> stop_signal(SystemExit(1), KeyboardInterrupt())
        'SIGINT'
        >>> stop_signal(RuntimeError("nan loss"), RuntimeError("nan loss")) is None
        True

    """
    candidates = [raised, seen] if isinstance(raised, SystemExit) else [raised]
    for exception in candidates:
        if isinstance(exception, SIGTERMException):
            return "SIGTERM"
        if isinstance(exception, KeyboardInterrupt):
            return str(getattr(exception, "signal_name", "SIGINT"))
    return None


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM and marked KILLED; `resume=true` continues it.

    Args:
        signal_name: `"SIGINT"`, `"SIGTERM"`, `"SIGUSR1"` or `"SIGUSR2"`.
        message: one line: the run, the iteration, how to continue.

    """

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number: 130 for SIGINT, 143 for SIGTERM, 138 for SIGUSR1."""
        return 128 + int(signal.Signals[self.signal_name])


class RunFailed(RuntimeError):
    """A run that failed for a reason one line names (a full disk, a lost rank); it is FAILED.

    `dacapo-train` prints the line and exits with :attr:`exit_code` (1), without a traceback.

    Args:
        message: one line: the run, what failed, how to continue.

    """

    exit_code = 1


def failure_line(err: BaseException) -> str | None:
    """The one line of a known fault in `err` or what it was raised from; None for another error.

    A known fault is an exception that carries its own line (`one_line`, e.g.
    :class:`~dacapo_hydra.training.checkpoints.DiskFull`).
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "one_line", None):
            return str(current.one_line)
        current = current.__cause__ or current.__context__
    return None
