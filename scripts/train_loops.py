"""The loops the training benchmark times, and what it times them with.

(a) :func:`plain_loop`, a plain PyTorch loop; (b) :func:`bare_lightning`, Lightning with
no logger, progress bar, callbacks or `self.log`; (c) :func:`project_loop`,
`dacapo_hydra.train` as configured, its data module replaced by the same in-memory
batches. :func:`training_extras` runs them interleaved: the loop ratio is (b) / (a), the
project's extras per iteration (c) - (b). Used by `bench_train.py` (a script, not a test).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import SimpleProfiler
from torch.utils.data import DataLoader, IterableDataset

WARMUP = 2


Stamp = tuple[float, float, float]


def stamp() -> Stamp:
    """(wall-clock time, CPU time of this process (every thread), CPU time of this thread)."""
    return time.perf_counter(), time.process_time(), time.thread_time()


class StepTimer(pl.Callback):
    """Stamps the end of every iteration (:func:`stamp`); rank 0 writes them to `path` (JSON)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.times: list[Stamp] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        """Stamp this iteration's end."""
        self.times.append(stamp())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the stamps (rank 0)."""
        if trainer.is_global_zero and self.path is not None:
            self.path.write_text(json.dumps(self.times))


QUIET = [
    "snapshot_interval=0",
    "lightning.enable_progress_bar=false",
    "lightning.log_every_n_steps=1000",
]


def compose_run(
    workdir: Path,
    architecture: str,
    overrides: list[str],
    datasplit: str = "synthetic_3d",
    quiet: bool = True,
) -> Any:
    """A training config for the benchmark: no validation; `quiet`: no snapshots or progress bar."""
    from dacapo_hydra.api import compose

    return compose(
        datasplit=datasplit,
        architecture=architecture,
        overrides=[
            f"paths.output_dir={workdir / 'outputs'}",
            "validation_interval=100000",
            "write_validation=false",
            *(QUIET if quiet else []),
            *overrides,
        ],
    )


class Endless(IterableDataset):
    """The same in-memory batches, round and round (an endless stream, like the run's crops)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return itertools.cycle(self.batches)


class InMemoryData(pl.LightningDataModule):
    """In place of the run's data module: the in-memory batches, no validation data."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.batches = batches

    def loader_workers(self, trainer: pl.Trainer | None = None) -> int:
        """No loader processes."""
        return 0

    def train_dataloader(self) -> DataLoader:
        """The batches, as they are (`batch_size=None`: no collation)."""
        return DataLoader(Endless(self.batches), batch_size=None)

    def val_dataloader(self) -> list:
        """None."""
        return []


def seconds_per_iteration(stamps: list[Stamp], warmup: int) -> Stamp:
    """Mean seconds per iteration after `warmup` on each clock (periodic costs included)."""
    first, last = stamps[warmup], stamps[-1]
    count = len(stamps) - warmup - 1
    wall, cpu, thread = ((b - a) / count for a, b in zip(first, last, strict=True))
    return wall, cpu, thread


def plain_loop(module: Any, batches: list[dict[str, torch.Tensor]], iterations: int) -> list[Stamp]:
    """(a) A plain PyTorch loop: the module's loss, backward, optimiser and LR schedule steps."""
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    loader = iter(DataLoader(Endless(batches), batch_size=None))
    module.train()
    stamps = []
    for _ in range(iterations):
        loss = module._loss(next(loader))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        stamps.append(stamp())
    return stamps


def bare_lightning(
    module: Any, batches: list[dict[str, torch.Tensor]], iterations: int, accelerator: str
) -> list[Stamp]:
    """(b) Lightning with no logger, progress bar, callbacks or `self.log`."""
    module.log = lambda *args, **kwargs: None  # the module's own train/loss logging: off
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision="32-true",
        max_steps=iterations,
        logger=False,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=InMemoryData(batches))
    return timer.times


def project_loop(cfg: Any, batches: list[dict[str, torch.Tensor]], path: Path) -> list[Stamp]:
    """(c) `dacapo_hydra.train` as configured (MLflow logger, callbacks, progress bar, logging).

    Only the data module is replaced, by the same in-memory batches; `cfg` holds a
    :class:`StepTimer` writing to `path`.
    """
    from dacapo_hydra.api import train
    from dacapo_hydra.training import run

    real = run.build

    def build(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(real(*args, **kwargs), datamodule=InMemoryData(batches))

    path.unlink(missing_ok=True)
    with mock.patch.object(run, "build", build), contextlib.redirect_stdout(sys.stderr):
        train(cfg)
    return json.loads(path.read_text())


class HookProfiler(SimpleProfiler):
    """Lightning's SimpleProfiler (every hook timed); the latest one is kept in :attr:`last`."""

    last: ClassVar[HookProfiler | None] = None

    def __init__(self) -> None:
        super().__init__()
        HookProfiler.last = self


def callback_costs(iterations: int, top: int = 6) -> dict[str, Any]:
    """Milliseconds per iteration in callback hooks, from the last :class:`HookProfiler` run."""
    costs: dict[str, float] = {}
    for action, durations in HookProfiler.last.recorded_durations.items():
        if action.startswith("[Callback]") and len(durations) >= iterations:
            name = action.removeprefix("[Callback]")
            hook = name.rsplit(".", 1)[-1]
            key = f"{name.split('{')[0].split('.')[0]}.{hook}"
            costs[key] = costs.get(key, 0.0) + 1000 * sum(durations) / iterations
    ranked = sorted(costs.items(), key=lambda item: -item[1])
    return {
        "note": "Lightning's SimpleProfiler over one more run of (c): hooks called every "
        "iteration, ms per iteration (the profiler's own cost included)",
        "total_ms": round(sum(costs.values()), 3),
        "top": {name: round(ms, 3) for name, ms in ranked[:top]},
    }


def training_extras(
    workdir: Path, architecture: str, datasplit: str, iterations: int, repeats: int
) -> dict:
    """Loop ratio (b)/(a) and the project's extras (c) - (b) per iteration, interleaved."""
    from dacapo_hydra.config.lightning import trainer_arguments
    from dacapo_hydra.training.build import build

    on_gpu = torch.cuda.is_available()
    accelerator = "gpu" if on_gpu else "cpu"
    path = workdir / "times_extras.json"
    overrides = [
        f"iterations={iterations}",
        f"lightning.accelerator={accelerator}",
        "lightning.precision=32-true",
        "+callbacks.timer._target_=train_loops.StepTimer",
        f"+callbacks.timer.path={path}",
    ]
    cfg = compose_run(workdir, architecture, overrides, datasplit=datasplit, quiet=False)
    built = build(cfg)
    device = torch.device("cuda" if on_gpu else "cpu")
    loader = iter(DataLoader(built.datamodule.train_data, batch_size=cfg.trainer.batch_size))
    batches = [{k: v.to(device) for k, v in next(loader).items()} for _ in range(8)]
    pristine = copy.deepcopy(built.module)
    warmup = max(WARMUP, iterations // 5)
    runs: dict[str, list[Stamp]] = {"plain": [], "bare": [], "project": []}
    for _ in range(repeats):
        stamps = plain_loop(copy.deepcopy(pristine).to(device), batches, iterations)
        runs["plain"].append(seconds_per_iteration(stamps, warmup))
        stamps = bare_lightning(copy.deepcopy(pristine), batches, iterations, accelerator)
        runs["bare"].append(seconds_per_iteration(stamps, warmup))
        stamps = project_loop(cfg, batches, path)
        runs["project"].append(seconds_per_iteration(stamps, warmup))
    profiled = compose_run(
        workdir,
        architecture,
        [*overrides, "lightning.profiler={_target_:train_loops.HookProfiler}"],
        datasplit=datasplit,
        quiet=False,
    )
    project_loop(profiled, batches, path)
    figures: dict[str, Any] = {"callbacks_profile": callback_costs(iterations)}
    for clock, index in (("wall", 0), ("cpu", 1), ("main_thread_cpu", 2)):
        plain, bare, project = (statistics.median(r[index] for r in v) for v in runs.values())
        figures[clock] = {
            "ms_per_iteration": {
                name: [round(1000 * r[index], 3) for r in v] for name, v in runs.items()
            },
            "plain_ms": round(1000 * plain, 3),
            "bare_lightning_ms": round(1000 * bare, 3),
            "project_ms": round(1000 * project, 3),
            "loop_ratio": round(bare / plain, 3),
            "lightning_ms_per_iteration": round(1000 * (bare - plain), 3),
            "extras_ms_per_iteration": round(1000 * (project - bare), 3),
        }
    return {
        "architecture": architecture,
        "datasplit": datasplit,
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "batch_size": int(cfg.trainer.batch_size),
        "torch_threads": torch.get_num_threads(),
        "iterations_per_run": iterations,
        "log_every_n_steps": trainer_arguments(cfg)["log_every_n_steps"],
        "progress_bar_refresh_rate": int(cfg.callbacks.progress_bar.refresh_rate),
        "warmup_iterations": warmup,
        "repeats": repeats,
        "loop_ratio": figures["wall"]["loop_ratio"],
        "lightning_ms_per_iteration": figures["wall"]["lightning_ms_per_iteration"],
        "extras_ms_per_iteration": figures["wall"]["extras_ms_per_iteration"],
        "loop_ratio_baseline": "(b) / (a): (a) a plain PyTorch loop (loss, backward, optimiser "
        "and LR steps) over the same in-memory batches, same module, device and threads; "
        "medians of interleaved runs (a, b, c, a, b, c, ...); goal <= 1.05. Lightning's own "
        "cost per iteration, (b) - (a), is fixed: the ratio is 1 + that / the step",
        "extras_baseline": "(c) - (b): (b) bare Lightning (no logger, progress bar, callbacks "
        "or self.log) over the same batches; (c) dacapo_hydra.train with the project's "
        "configuration (MLflow logger, configured and run callbacks, progress bar, train/loss "
        "logging), its data module replaced by the same batches; goal < 1 ms",
        "clocks": "wall: elapsed time (the figures above); cpu: CPU time of the whole process "
        "(every thread, MLflow's queued writes included); main_thread_cpu: the training "
        "thread's CPU time (what delays a GPU step); CPU clocks are steadier on a shared machine",
        **figures,
    }
