"""Benchmark blockwise prediction (dacapo-predict) against the limit, in one run.

Prints one JSON document; every ratio's baseline is named beside it and measured
in the same process, interleaved with what it is compared to (A, B, A, B, ...):
- `valid`: unet_tiny (valid convolutions), zarr to zarr, against the bare forward
  pass over the same tiles (read and normalised beforehand, in memory) with the
  same number of blocks computing at once (goal: ratio >= 0.9);
- `same`: a small MONAI BasicUNet ('same' padding), zarr to zarr (read and write
  included), against MONAI's `sliding_window_inference` over the same volume in
  memory with the same window, overlap and Gaussian blending (goal: ratio >= 0.9);
- `dask`: voxels/s of the valid network in this process and on 2 Dask workers (the
  cluster's start-up, paid once per cluster, given apart);
- `memory`: peak resident memory (VmHWM) of a fresh process predicting each volume
  edge (goal: flat), with `rss_after_load_mb`, and seconds per megavoxel
  (`cost_ratio_largest_vs_smallest`, goal: 1 +- 0.1);
- `valid.stage_seconds_one_thread` and `valid.profile_one_thread`: each stage's seconds (read,
  compute, write) and a cProfile of all blocks on one thread: where the rest goes.

The valid model is unet_tiny trained a few iterations on tiny synthetic data; the
'same' one is untrained. Not a test: figures depend on the machine. Usage:
    python scripts/bench_predict.py [--sizes 128 256 512] [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr

VOXEL = 8.0


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB), from /proc's VmHWM where there is one."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_model(work: Path, iterations: int) -> str:
    """A unet_tiny distance checkpoint trained `iterations` steps on tiny synthetic data.

    Trained once per `work` folder and iteration count; later runs reuse it.
    """
    record = work / f"checkpoint_{iterations}.txt"
    if record.exists() and Path(record.read_text()).is_file():
        return record.read_text()
    from dacapo_hydra.api import compose
    from dacapo_hydra.training.run import train

    cfg = compose(
        datasplit="synthetic_3d",
        architecture="unet_tiny",
        task="distance",
        overrides=[
            "datasplit.synthetic.shape=[48,48,48]",
            f"datasplit.synthetic.container={work / 'synthetic_3d.zarr'}",
            f"iterations={iterations}",
            f"validation_interval={iterations + 1}",
            f"paths.output_dir={work / 'run'}",
        ],
    )
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
        checkpoint = str(train(cfg).checkpoint)
    record.write_text(checkpoint)
    return checkpoint


def write_volume(path: Path, edge: int, chunk: int = 64) -> None:
    """A uint8 raw volume (cubes plus noise), written in slabs (never whole in memory)."""
    if (path / "zarr.json").exists():
        return
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    raw = root.create_array("raw", shape=(edge,) * 3, chunks=(chunk,) * 3, dtype="uint8")
    raw.attrs.update({"voxel_size": [VOXEL] * 3, "offset": [0.0] * 3})
    rng = np.random.default_rng(0)
    for z in range(0, edge, chunk):
        zz, yy, xx = np.ogrid[z : z + chunk, :edge, :edge]
        cubes = ((zz // 24 + yy // 24 + xx // 24) % 2).astype(np.uint8)
        noise = rng.integers(0, 40, cubes.shape, dtype=np.uint8)
        raw[z : z + chunk] = np.where(cubes > 0, 180, 100).astype(np.uint8) + noise


def child_predict(checkpoint: str, volume: Path, out: Path) -> dict:
    """In a fresh process: predict the whole volume blockwise, zarr to zarr."""
    from dacapo_hydra.inference.options import Execution
    from dacapo_hydra.inference.predict import plan_prediction

    shutil.rmtree(out, ignore_errors=True)
    job = plan_prediction(checkpoint, volume, "raw", out, "prediction")
    loaded = peak_rss_mb()
    result = job.run(Execution(progress=False))
    voxels = int(np.prod(job.grid.roi.shape) / VOXEL**3)
    return {
        "seconds": result.seconds,
        "voxels": voxels,
        "blocks": result.blocks,
        "voxels_per_s": voxels / result.seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_load_mb": loaded,
        "input_shape": list(job.plan.input_shape),
        "write_shape": list(job.plan.write_shape),
    }


def bare_forward(module: torch.nn.Module, tiles: list[torch.Tensor], in_flight: int) -> float:
    """Seconds of the forward pass alone over `tiles`, `in_flight` at once (to numpy)."""

    def one(tile: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(tile)[0].numpy()

    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        for _ in pool.map(one, tiles):
            pass
    return time.perf_counter() - start


def child_valid(checkpoint: str, volume: Path, rounds: int) -> dict:
    """Blockwise zarr to zarr vs the bare forward pass over its tiles, interleaved."""
    from dacapo_hydra.inference.options import Execution
    from dacapo_hydra.inference.predict import plan_prediction
    from dacapo_hydra.inference.schedule import IN_PROCESS_THREADS

    out = volume.with_suffix(".pairs.zarr")
    job = plan_prediction(checkpoint, volume, "raw", out, "prediction")
    job.create_output()
    runner = job.predictor.opened[0]
    tiles = [runner.read(b) for b in job.grid]
    voxels = int(np.prod(runner.raw.spatial_shape))
    blockwise, bare = [], []
    for _ in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        job = plan_prediction(checkpoint, volume, "raw", out, "prediction")
        blockwise.append(voxels / job.run(Execution(progress=False)).seconds)
        bare.append(voxels / bare_forward(job.model, tiles, IN_PROCESS_THREADS))
    stages, profile = staged(checkpoint, volume, out)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "blockwise_voxels_per_s": [round(v) for v in blockwise],
        "baseline_voxels_per_s": [round(v) for v in bare],
        "ratios": [round(a / b, 3) for a, b in zip(blockwise, bare, strict=True)],
        "ratio": round(float(np.median(np.divide(blockwise, bare))), 3),
        "baseline": f"bare forward (model(tile)) over the same {len(tiles)} tiles, read and "
        f"normalised beforehand, {IN_PROCESS_THREADS} at once on threads",
        "blocks_computing_at_once": IN_PROCESS_THREADS,
        "input_shape": list(job.plan.input_shape),
        "write_shape": list(job.plan.write_shape),
        "stage_seconds_one_thread": stages,
        "profile_one_thread": profile,
    }


def staged(checkpoint: str, volume: Path, out: Path, lines: int = 12) -> tuple[dict, list[str]]:
    """Seconds per stage (read, compute, write) of every block on one thread, and the top
    `lines` of a cProfile of that run by own time: where the time goes besides the forward."""
    from dacapo_hydra.inference.options import PredictOptions
    from dacapo_hydra.inference.predict import plan_prediction

    options = PredictOptions(overwrite=True)
    job = plan_prediction(checkpoint, volume, "raw", out, "prediction", options=options)
    job.create_output()
    worker = job.predictor
    seconds = {"read": 0.0, "compute": 0.0, "write": 0.0}
    profile = cProfile.Profile()
    profile.enable()
    for block in job.grid:
        start = time.perf_counter()
        loaded = worker.load(block)
        seconds["read"] += time.perf_counter() - start
        start = time.perf_counter()
        computed = worker.compute(block, loaded)
        seconds["compute"] += time.perf_counter() - start
        start = time.perf_counter()
        worker.store(block, computed)
        seconds["write"] += time.perf_counter() - start
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(lines)
    rows = [r for r in text.getvalue().splitlines() if r.strip()]
    return {k: round(v, 2) for k, v in seconds.items()}, rows[-lines - 1 :]


def child_same(work: Path, edge: int, window: int, block: int, rounds: int) -> dict:
    """'Same'-padding BasicUNet: blockwise zarr to zarr vs MONAI's sliding window in memory."""
    from monai.inferers import sliding_window_inference

    from dacapo_hydra.api import compose
    from dacapo_hydra.data.array import ZarrArray
    from dacapo_hydra.inference.options import Execution, PredictOptions
    from dacapo_hydra.inference.predict import plan_prediction
    from dacapo_hydra.model.windows import SIGMA_SCALE
    from dacapo_hydra.training.build import build

    torch.manual_seed(0)
    cfg = compose(
        datasplit="synthetic_3d",
        architecture="monai_basic_unet",
        task="distance",
        overrides=[f"datasplit.synthetic.container={work / 'synthetic_3d.zarr'}"],
    )
    with contextlib.redirect_stdout(sys.stderr):
        module = build(cfg).module.model.eval()
    volume = work / f"vol{edge}.zarr"
    write_volume(volume, edge)
    raw = ZarrArray.open(volume, "raw")
    options = PredictOptions(input_shape=(window,) * 3, overlap=0.5, block_shape=(block,) * 3)
    out = volume.with_suffix(".same.zarr")
    data = torch.from_numpy(raw.read(raw.roi).astype(np.float32) / 255)[None, None]
    voxels = edge**3
    # The limit: MONAI with one, two (as blockwise computes two blocks at once, each
    # two windows per forward pass) and four windows per forward; the fastest counts.
    blockwise, monai, by_batch = [], [], {1: [], 2: [], 4: []}
    for _ in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        job = plan_prediction(module, volume, "raw", out, "p", options=options)
        blockwise.append(voxels / job.run(Execution(progress=False)).seconds)
        for sw_batch in by_batch:
            start = time.perf_counter()
            with torch.inference_mode():
                sliding_window_inference(
                    data,
                    (window,) * 3,
                    sw_batch,
                    module,
                    overlap=0.5,
                    mode="gaussian",
                    sigma_scale=SIGMA_SCALE,
                ).numpy()
            by_batch[sw_batch].append(voxels / (time.perf_counter() - start))
        monai.append(max(v[-1] for v in by_batch.values()))
    shutil.rmtree(out, ignore_errors=True)
    features = cfg.architecture.network.features
    return {
        "network": f"MONAI BasicUNet features {list(features)}, untrained",
        "volume": [edge] * 3,
        "window": [window] * 3,
        "overlap": 0.5,
        "block": [block] * 3,
        "blocks": len(job.grid),
        "blockwise_voxels_per_s": [round(v) for v in blockwise],
        "baseline_voxels_per_s": [round(v) for v in monai],
        "baseline_voxels_per_s_by_sw_batch": {
            str(k): [round(v) for v in vs] for k, vs in by_batch.items()
        },
        "ratios": [round(a / b, 3) for a, b in zip(blockwise, monai, strict=True)],
        "ratio": round(float(np.median(np.divide(blockwise, monai))), 3),
        "baseline": "monai.inferers.sliding_window_inference over the same volume in memory "
        "(same window, overlap, Gaussian blending; the fastest of sw_batch_size 1, 2 and 4); "
        "blockwise reads and writes zarr, two blocks computing at once, two windows per "
        "forward pass",
    }


def child_dask(checkpoint: str, volume: Path, workers: int) -> dict:
    """Voxels/s of blockwise prediction on `workers` Dask workers, and their start-up.

    One worker runs in this process (two blocks in flight on threads). For more, a
    LocalCluster starts first and its workers import torch and the predictor
    (`startup_seconds`: paid once per cluster, so amortised over a large volume); the
    job's voxels/s then include shipping the predictor and each worker's model load.
    """
    from dacapo_hydra.inference.options import Execution
    from dacapo_hydra.inference.predict import plan_prediction

    out = volume.with_suffix(f".dask{workers}.zarr")
    shutil.rmtree(out, ignore_errors=True)
    job = plan_prediction(checkpoint, volume, "raw", out, "prediction")
    started = time.perf_counter()
    if workers == 1:
        result = job.run(Execution(progress=False))
        startup = 0.0
    else:
        from dask.distributed import Client, LocalCluster

        def warm() -> int:
            import dacapo_hydra.inference.predictor  # noqa: F401

            return torch.get_num_threads()

        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            threads = set(client.run(warm).values())
            startup = time.perf_counter() - started
            result = job.run(Execution(scheduler=cluster.scheduler_address, progress=False))
        assert threads == {1}, f"each worker's torch threads: {threads}"
    shutil.rmtree(out, ignore_errors=True)
    return {
        "voxels_per_s": round(result.voxels_per_s),
        "seconds": round(result.seconds, 2),
        "startup_seconds": round(startup, 2),
    }


def run_child(*args: str) -> dict:
    """Run this script's child mode in a fresh process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args: list[str]) -> dict:
    """The answer of one child mode."""
    mode, *rest = args
    if mode == "predict":
        volume = Path(rest[1])
        return child_predict(rest[0], volume, volume.with_suffix(".out.zarr"))
    if mode == "valid":
        return child_valid(rest[0], Path(rest[1]), int(rest[2]))
    if mode == "same":
        return child_same(Path(rest[0]), *(int(r) for r in rest[1:]))
    return child_dask(rest[0], Path(rest[1]), int(rest[2]))


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--ratio-size", type=int, default=256, help="edge of the valid ratio")
    parser.add_argument(
        "--same", nargs=3, type=int, default=[128, 64, 64], metavar=("EDGE", "WINDOW", "BLOCK")
    )
    parser.add_argument("--dask-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/bench_predict")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DACAPO_CACHE_DIR", str(work / "cache"))
    checkpoint = train_model(work, args.iterations)

    def volume(edge: int) -> str:
        path = work / f"vol{edge}.zarr"
        write_volume(path, edge)
        return str(path)

    valid = run_child("valid", checkpoint, volume(args.ratio_size), str(args.rounds))
    same = run_child("same", str(work), *(str(v) for v in args.same), str(args.rounds))
    dask = {n: run_child("dask", checkpoint, volume(args.dask_size), str(n)) for n in (1, 2)}
    blockwise = {}
    for edge in args.sizes:
        blockwise[edge] = run_child("predict", checkpoint, volume(edge))
        shutil.rmtree(Path(volume(edge)).with_suffix(".out.zarr"), ignore_errors=True)
    cost = {e: b["seconds"] / b["voxels"] * 1e6 for e, b in blockwise.items()}
    smallest, largest = min(cost), max(cost)
    print(
        json.dumps(
            {
                "valid": {
                    "model": f"unet_tiny (distance), trained {args.iterations} iterations",
                    "volume": [args.ratio_size] * 3,
                    **valid,
                },
                "same": same,
                "dask": {
                    "volume": [args.dask_size] * 3,
                    "voxels_per_s": {n: d["voxels_per_s"] for n, d in dask.items()},
                    "seconds": {n: d["seconds"] for n, d in dask.items()},
                    "startup_seconds": {n: d["startup_seconds"] for n, d in dask.items()},
                },
                "memory": {
                    "voxels_per_s": {e: round(b["voxels_per_s"]) for e, b in blockwise.items()},
                    "peak_rss_mb": {e: round(b["peak_rss_mb"], 1) for e, b in blockwise.items()},
                    "rss_after_load_mb": {
                        e: round(b["rss_after_load_mb"], 1) for e, b in blockwise.items()
                    },
                    "seconds_per_megavoxel": {e: round(c, 3) for e, c in cost.items()},
                    "cost_ratio_largest_vs_smallest": round(cost[largest] / cost[smallest], 3),
                    "blocks": {e: b["blocks"] for e, b in blockwise.items()},
                },
                "voxel_size_nm": [VOXEL] * 3,
                "torch_threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "cpus": len(os.sched_getaffinity(0)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
