"""Stop signals and full disks, in process: the handler, the loader workers, the one line."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dacapo_hydra.training.checkpoints import AtomicCheckpointIO, DiskFull, saved_size
from dacapo_hydra.training.process.signals import (
    WORKER_IGNORED,
    SignalStop,
    StopSignals,
    shield_workers,
)
from dacapo_hydra.training.process.stops import failure_line, stop_signal


class Dispositions(Dataset):
    """Each item: the worker's handler of each stop signal, and whether it was seeded."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict[str, object]:
        handlers = [signal.getsignal(s) == signal.SIG_IGN for s in WORKER_IGNORED]
        return {"ignored": torch.tensor(handlers), "seeded": torch.tensor(SEEDED)}


SEEDED = [False]


def _mark_seeded(worker_id: int) -> None:
    SEEDED[0] = True


def test_loader_workers_ignore_the_jobs_signals_and_keep_their_init() -> None:
    loader = DataLoader(Dispositions(), batch_size=2, num_workers=1, worker_init_fn=_mark_seeded)
    assert shield_workers([loader, DataLoader(Dispositions())]) == 1  # no workers: untouched
    assert shield_workers(loader) == 0  # once
    (batch,) = list(loader)
    assert batch["ignored"].all() and batch["seeded"].all()
    # This process (not a worker) keeps its handlers.
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN


def test_a_signal_outside_fit_raises_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals.installed() as stopper, pytest.raises(SignalStop) as stopped:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(1)  # the handler runs at the next bytecode: never gets here whole
    assert stopper.received == "SIGUSR1" and stopped.value.signal_name == "SIGUSR1"
    assert stop_signal(SystemExit(1), stopped.value) == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_full_disk_leaves_the_previous_checkpoint_and_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "last.ckpt"
    small = {"global_step": 1, "state_dict": {"w": torch.zeros(10)}}
    big = {"global_step": 2, "state_dict": {"w": torch.zeros(200_000)}}
    AtomicCheckpointIO().save_checkpoint(small, path)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, limits[1]))
    try:
        with pytest.raises(DiskFull) as full:
            AtomicCheckpointIO().save_checkpoint(big, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    wrapped = RuntimeError("fit failed")  # as Lightning or torch may wrap it
    wrapped.__cause__ = full.value
    line = failure_line(wrapped)
    assert line is not None and line == str(full.value)
    assert failure_line(RuntimeError("another error")) is None
    (text,) = line.splitlines()
    needed = saved_size(big)
    assert text.startswith("File too large (the file-size limit, ulimit -f, is 100000 bytes): ")
    assert f"checkpoint last.ckpt needs {needed} bytes " in text
    assert f" in {tmp_path}, " in text and text.endswith("the previous last.ckpt is intact")
    assert needed > 800_000
    assert torch.load(path, weights_only=True)["global_step"] == 1  # intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left
