"""Stop signals the way a cluster sends them: to every process of the job at once.

SLURM's `scancel`, its time limit and preemption, `timeout` and a container stop
send SIGTERM to the whole process group, DataLoader workers included; SLURM's
`--signal` sends SIGUSR1 or SIGUSR2 ahead of the limit. :class:`StopSignals`, held
for a whole run (:meth:`StopSignals.installed`) and a callback of its Trainer:

- makes every DataLoader worker ignore SIGTERM, SIGINT, SIGUSR1 and SIGUSR2
  (:class:`WorkerInit`, wrapped around the loader's own `worker_init_fn`): a worker
  killed by the job's signal would fail the loader (`DataLoader worker (pid ...) is
  killed by signal: Terminated`) before the main process could stop cleanly. The
  workers leave when the main process shuts its loader down (or, if it dies, when
  torch's watchdog sees their parent gone);
- inside `fit`, takes SIGUSR1 and SIGUSR2 as Lightning takes SIGTERM: the current
  batch ends, then Lightning raises `SIGTERMException`,
  :class:`~dacapo_hydra.training.callbacks.LastCheckpoint` saves `last.ckpt` and the
  run ends KILLED (:mod:`dacapo_hydra.training.process.stops`);
- with DDP, where every rank gets the signal, replaces Lightning's SIGTERM handler
  (which broadcasts from inside the handler and can hang the ranks) and has the ranks
  agree, after each batch, whether any got a signal, so that all stop after the same one;
- outside `fit` (building the run, logging its last artifacts), raises
  :class:`SignalStop`, a `KeyboardInterrupt` that names the signal, so the run
  still ends KILLED instead of RUNNING forever.

The exit status is 128 + the signal's number (143 for SIGTERM), as a shell reports
a process ended by it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from functools import partial
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from lightning_fabric.utilities.seed import pl_worker_init_function
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader

# What a cluster sends to stop (or warn before stopping) a job.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# What a loader worker ignores: the job's signals, and Ctrl-C sent to the terminal's group.
WORKER_IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class SignalStop(KeyboardInterrupt):
    """A stop signal came outside `fit`; the run ends KILLED.

    Args:
        signal_name: e.g. `"SIGTERM"`.

    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.signal_name = signal_name


class WorkerInit:
    """A DataLoader `worker_init_fn`: ignore the job's stop signals, then the loader's own.

    Picklable (a loader started with `spawn` or `forkserver` sends it to the worker).

    Args:
        inner: the loader's `worker_init_fn` (Lightning's seeding one, say), or None.

    """

    def __init__(self, inner: Callable[[int], Any] | None) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        """Ignore :data:`WORKER_IGNORED` in this worker, then call the inner function."""
        for signum in WORKER_IGNORED:
            signal.signal(signum, signal.SIG_IGN)
        if self.inner is not None:
            self.inner(worker_id)


def shield_workers(loaders: Any, rank: int = 0) -> int:
    """Give every DataLoader in `loaders` (one, or a list/dict of them) a :class:`WorkerInit`.

    Must run before the loader's workers start (its first `iter`). Loaders without
    workers are left as they are. A loader without a `worker_init_fn` gets the one
    Lightning would have given it (`pl_worker_init_function`, under
    `seed_everything(workers=True)`), inside the :class:`WorkerInit`.

    Args:
        loaders: what a `*_dataloader` hook returned.
        rank: the process's global rank (for Lightning's worker seeds).

    Returns:
        How many loaders were changed.

    """
    if isinstance(loaders, DataLoader):
        if loaders.num_workers == 0 or isinstance(loaders.worker_init_fn, WorkerInit):
            return 0
        inner = loaders.worker_init_fn
        if inner is None and int(os.environ.get("PL_SEED_WORKERS", 0)):
            inner = partial(pl_worker_init_function, rank=rank)
        loaders.worker_init_fn = WorkerInit(inner)
        return 1
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, list | tuple):
        return sum(shield_workers(loader, rank) for loader in loaders)
    return 0


def _shielding(trainer: pl.Trainer, hook: Callable[[], Any]) -> Callable[[], Any]:
    """`hook` (a `*_dataloader` method), its loaders shielded before Lightning starts them."""

    def shielded() -> Any:
        loaders = hook()
        shield_workers(loaders, trainer.global_rank)
        return loaders

    return shielded


class StopSignals(pl.Callback):
    """The run's handler of SIGTERM, SIGUSR1 and SIGUSR2, and the callback that shields workers.

    Attributes:
        received: the first stop signal's name (`"SIGTERM"`), None while none came.

    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._trainer: pl.Trainer | None = None
        self._wrapped: Any = None

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[StopSignals]:
        """A new handler, installed for the block (main thread only), then the old ones back."""
        stopper = cls()
        saved: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                saved[signum] = signal.signal(signum, stopper.handle)
        try:
            yield stopper
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Inside `fit`: stop after the current batch. Outside: raise :class:`SignalStop`.

        Inside a one-process `fit`, Lightning's own SIGTERM handler runs first and
        calls this one (it keeps the handler it found). With DDP the ranks agree on
        when to stop (:meth:`on_train_batch_end`).
        """
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
        if self._trainer is None:
            raise SignalStop(name)
        if self._trainer.world_size == 1:
            self._request_stop(self._trainer)

    @staticmethod
    def _request_stop(trainer: pl.Trainer) -> None:
        """Have Lightning stop as for SIGTERM: after the current batch, `SIGTERMException`."""
        # Lightning reads the flag through `trainer.received_sigterm`, which has no setter.
        trainer._signal_connector.received_sigterm = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """From here on a signal stops the loop at the end of a batch; loaders get shielded.

        Lightning asks for the loaders and starts their workers after this hook and
        before any other: the data module's (or module's) `train_dataloader` and
        `val_dataloader` are wrapped here, for this `fit` (:meth:`teardown` unwraps them).
        """
        self._trainer = trainer
        source = trainer.datamodule if trainer.datamodule is not None else pl_module
        self._wrapped = source
        for hook in ("train_dataloader", "val_dataloader"):
            if is_overridden(hook, source):
                setattr(source, hook, _shielding(trainer, getattr(source, hook)))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A signal that came during set-up stops the loop now; DDP: this handler alone.

        Lightning resets its flag when it installs its handlers (after `on_fit_start`).
        With several processes Lightning's SIGTERM handler broadcasts from inside the
        handler, which, when every rank gets the signal at once, mismatches the ranks'
        collectives and hangs the job: this handler replaces it, and the ranks agree on
        the batch to stop after (:meth:`on_train_batch_end`).
        """
        if trainer.world_size > 1:
            if threading.current_thread() is threading.main_thread():
                for signum in STOP_SIGNALS:
                    signal.signal(signum, self.handle)
        elif self.received is not None:
            self._request_stop(trainer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """DDP: stop after this batch on every rank if any rank got a stop signal.

        One all-reduce (max) of a flag per batch, so that all ranks raise Lightning's
        `SIGTERMException` after the same batch and save `last.ckpt` together.
        """
        if trainer.world_size == 1 or not dist.is_available() or not dist.is_initialized():
            return
        flag = torch.tensor(
            [int(self.received is not None)], dtype=torch.int32, device=trainer.strategy.root_device
        )
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            self._request_stop(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """After `fit`, a signal raises :class:`SignalStop` again; the loaders are unwrapped."""
        self._trainer = None
        for hook in ("train_dataloader", "val_dataloader"):
            if self._wrapped is not None and hook in vars(self._wrapped):
                delattr(self._wrapped, hook)
        self._wrapped = None
