"""Benchmark training: the project's extras per iteration and the loop ratio, throughput
over processes (DDP), architectures and loader workers, GPU feeding.

Prints one JSON document:
- `extras`: per iteration, on the same in-memory batches, same module, device and threads
  (a tiny network, 2D unet_tiny, so the step is small and the extras show):
  `loop_ratio` = bare Lightning / a plain PyTorch loop (goal <= 1.05) and
  `extras_ms_per_iteration` = the project's full training configuration (MLflow logger,
  callbacks, progress bar, train/loss logging) - bare Lightning (goal < 1 ms); medians of
  interleaved runs, in wall-clock and process CPU time, and the callbacks' hooks profiled
  (`train_loops.py` holds the loops); `extras_3d`: the same on 3D unet_tiny (44³ crops),
  the project's usual step, where Lightning's fixed cost per iteration
  (`lightning_ms_per_iteration`, (b) - (a)) is a smaller share;
- `training`: iterations/s and samples/s (crops per second over all processes) of the
  real training path (`dacapo_hydra.train`, synthetic 3D data, the default trainer and
  its augmentations, no validation) for each architecture (`unet_tiny`,
  `cnnectome_unet`) on 1 and 2 processes (DDP over gloo on CPUs, nccl on GPUs), timed
  on rank 0 after a warm-up;
- `loader_samples_per_s`: crops per second of the training loader alone (crop, warp,
  augment, targets) with 0, 1 and 2 DataLoader workers;
- `gpu`: where CUDA is present, the GPU-busy fraction of a training loop fed by the
  loader (compute time / wall time) and its speed against the same loop fed from
  batches made beforehand and kept in GPU memory; otherwise null, and `note` says so.

`--quick` measures `extras` and `extras_3d` only. Not a test: figures depend on the
machine. Usage:
    python scripts/bench_train.py [--quick] [--iterations 5]
        [--architectures unet_tiny cnnectome_unet] [--processes 1 2] [--workers 0 1 2]
        [--extras-iterations 500] [--extras-repeats 5] [--workdir /tmp/bench_train]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from train_loops import WARMUP, compose_run, training_extras


def train_rate(workdir: Path, architecture: str, processes: int, iterations: int) -> dict:
    """Iterations/s and samples/s of `processes` DDP processes training `architecture`."""
    from dacapo_hydra.api import train
    from dacapo_hydra.devices import cpus_per_device, loader_workers

    times = workdir / f"times_{architecture}_{processes}.json"
    times.unlink(missing_ok=True)
    ddp = ["lightning.strategy=ddp"] if processes > 1 else []
    cfg = compose_run(
        workdir,
        architecture,
        [
            f"iterations={iterations + WARMUP}",
            f"lightning.devices={processes}",
            "+callbacks.timer._target_=train_loops.StepTimer",
            f"+callbacks.timer.path={times}",
            *ddp,
        ],
    )
    with contextlib.redirect_stdout(sys.stderr):  # the run's summary line: not the JSON
        train(cfg)
    stamps = [wall for wall, *_ in json.loads(times.read_text())[WARMUP - 1 :]]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    batch = int(cfg.trainer.batch_size)
    return {
        "architecture": architecture,
        "processes": processes,
        "batch_size": batch,
        "input_shape": list(cfg.architecture.input_shape)
        if not isinstance(cfg.architecture.input_shape, int)
        else [cfg.architecture.input_shape] * 3,
        "loader_workers_per_process": loader_workers(
            cfg.trainer.num_workers, cpus_per_device(processes)
        ),
        "iterations_timed": len(stamps) - 1,
        "iterations_per_s": round(rate, 3),
        "samples_per_s": round(rate * batch * processes, 3),
    }


def loader_rates(workdir: Path, workers: list[int], samples: int) -> dict[str, float]:
    """Crops/s of the unet_tiny training loader with each number of workers."""
    from dacapo_hydra.training.build import build

    data = build(compose_run(workdir, "unet_tiny", [])).datamodule.train_data
    rates = {}
    for count in workers:
        loader = iter(DataLoader(data, batch_size=1, num_workers=count))
        for _ in range(max(2, 2 * count)):
            next(loader)
        start = time.perf_counter()
        for _ in range(samples):
            next(loader)
        rates[str(count)] = round(samples / (time.perf_counter() - start), 2)
        del loader
    return rates


def gpu_feeding(workdir: Path, architecture: str, iterations: int) -> dict:
    """GPU-busy fraction of a loader-fed loop, and its speed against in-memory batches."""
    from dacapo_hydra.devices import loader_workers, trainer_cpus
    from dacapo_hydra.training.build import build

    built = build(compose_run(workdir, architecture, []))
    module = built.module.cuda().train()
    optimizer = torch.optim.Adam(module.parameters(), 1e-4)
    datamodule = built.datamodule
    workers = loader_workers(datamodule.num_workers, trainer_cpus(None))
    loader = iter(
        DataLoader(
            datamodule.train_data,
            batch_size=datamodule.batch_size,
            num_workers=workers,
            pin_memory=True,
            persistent_workers=workers > 0,
            prefetch_factor=datamodule.prefetch_factor if workers else None,
        )
    )

    def step(batch: dict[str, torch.Tensor]) -> float:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_bf16_supported()):
            loss = module._loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1000

    def to_gpu(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.cuda(non_blocking=True) for k, v in batch.items()}

    for _ in range(WARMUP):
        step(to_gpu(next(loader)))
    busy, start = 0.0, time.perf_counter()
    for _ in range(iterations):
        busy += step(to_gpu(next(loader)))
    fed = time.perf_counter() - start
    cached = [to_gpu(next(loader)) for _ in range(4)]
    start = time.perf_counter()
    for i in range(iterations):
        step(cached[i % len(cached)])
    in_memory = time.perf_counter() - start
    return {
        "architecture": architecture,
        "device": torch.cuda.get_device_name(),
        "loader_workers": workers,
        "busy_fraction": round(busy / fed, 3),
        "loader_fed_iterations_per_s": round(iterations / fed, 3),
        "in_memory_iterations_per_s": round(iterations / in_memory, 3),
        "loader_fed_vs_in_memory": round(in_memory / fed, 3),
    }


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per run")
    parser.add_argument("--architectures", nargs="+", default=["unet_tiny", "cnnectome_unet"])
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--loader-samples", type=int, default=20)
    parser.add_argument("--extras-iterations", type=int, default=500, help="per run, each loop")
    parser.add_argument("--extras-repeats", type=int, default=5, help="interleaved runs of each")
    parser.add_argument("--extras-threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument(
        "--quick", action="store_true", help="extras and loop ratios only (no throughput runs)"
    )
    parser.add_argument("--workdir", default="/tmp/bench_train")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DACAPO_CACHE_DIR", str(work / "cache"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # DDP ranks: train_loops.StepTimer
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_loops.StepTimer
    started = time.perf_counter()
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(args.extras_threads)
    report: dict[str, Any] = {
        "extras": training_extras(
            work, "unet_tiny", "synthetic_2d", args.extras_iterations, args.extras_repeats
        ),
        # The same on the project's usual step (3D unet_tiny, 44³ crops): fewer iterations.
        "extras_3d": training_extras(work, "unet_tiny", "synthetic_3d", 60, args.extras_repeats),
    }
    torch.set_num_threads(threads)
    if not args.quick:
        report["training"] = [
            train_rate(work, architecture, processes, args.iterations)
            for architecture in args.architectures
            for processes in args.processes
        ]
        report["loader_samples_per_s"] = loader_rates(work, args.workers, args.loader_samples)
        report["gpu"] = None
        report["note"] = (
            "no GPU was present: GPU-busy fraction and the in-memory ratio were not measured"
        )
        if torch.cuda.is_available():
            report["gpu"] = [gpu_feeding(work, a, args.iterations) for a in args.architectures]
            report["note"] = "GPU present: DDP processes use one GPU each (nccl)"
        report["backend"] = "nccl" if torch.cuda.is_available() else "gloo"
        report["warmup_iterations"] = WARMUP
    print(
        json.dumps(
            {
                **report,
                "gpu_present": torch.cuda.is_available(),
                "cpus": len(os.sched_getaffinity(0)),
                "torch_threads": threads,
                "torch": torch.__version__,
                "lightning": pl.__version__,
                "machine": platform.machine(),
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
