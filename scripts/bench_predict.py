"""Benchmark blockwise prediction (dacapo-predict): throughput, peak memory, cost per voxel.

Prints one JSON document:
- `voxels_per_s`: blockwise prediction from zarr to zarr, per volume edge;
- `in_memory_voxels_per_s`: the same model's forward pass over the same tiles, read
  and normalised beforehand and held in memory (the limit), and `efficiency`, the
  ratio of the two (goal >= 0.9);
- `peak_rss_mb`: peak resident memory (VmHWM) of a fresh process predicting a
  128³, 256³ and 512³ volume (goal: flat), with `rss_after_load_mb` (imports + model);
- `seconds_per_megavoxel` per edge and `cost_ratio_largest_vs_smallest` (goal: 1 +- 0.1).

The model is unet_tiny (a one-level valid U-Net) trained a few iterations on tiny
synthetic data. Not a test: figures depend on the machine. Usage:
    python scripts/bench_predict.py [--sizes 128 256 512] [--workdir /tmp/bench_predict]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
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
    """A unet_tiny distance checkpoint trained `iterations` steps on tiny synthetic data."""
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
        return train(cfg).checkpoint


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


def child_memory(checkpoint: str, volume: Path) -> dict:
    """In a fresh process: the forward pass alone over the same tiles, held in memory."""
    from dacapo_hydra.data.array import ZarrArray
    from dacapo_hydra.data.normalize import Normalizer
    from dacapo_hydra.inference.blocks import BlockGrid
    from dacapo_hydra.inference.plan import BlockPlan
    from dacapo_hydra.inference.predictor import load_model

    module = load_model(checkpoint)
    raw = ZarrArray.open(volume, "raw")
    plan = BlockPlan.for_module(module, raw.voxel_size)
    normalize = Normalizer.from_hparams(module.hparams)
    grid = BlockGrid(raw.roi, plan.block_size, plan.context)
    tiles = [
        torch.from_numpy(normalize(raw.read_padded(b.read_roi, "reflect")))[None, None]
        for b in grid
    ]
    start = time.perf_counter()
    with torch.inference_mode():
        for tile in tiles:
            module.predict(tile).numpy()
    seconds = time.perf_counter() - start
    voxels = int(np.prod(raw.spatial_shape))
    return {"seconds": seconds, "voxels_per_s": voxels / seconds, "tiles": len(tiles)}


def run_child(*args: str) -> dict:
    """Run this script's child mode in a fresh process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--memory-sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/bench_predict")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, checkpoint, volume = args.child
        if mode == "predict":
            answer = child_predict(checkpoint, Path(volume), Path(volume).with_suffix(".out.zarr"))
        else:
            answer = child_memory(checkpoint, Path(volume))
        print(json.dumps(answer))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DACAPO_CACHE_DIR", str(work / "cache"))
    checkpoint = train_model(work, args.iterations)
    blockwise, memory = {}, {}
    for edge in args.sizes:
        volume = work / f"vol{edge}.zarr"
        write_volume(volume, edge)
        blockwise[edge] = run_child("predict", checkpoint, str(volume))
        if edge in args.memory_sizes:
            memory[edge] = run_child("memory", checkpoint, str(volume))
        shutil.rmtree(volume.with_suffix(".out.zarr"), ignore_errors=True)
    cost = {e: b["seconds"] / b["voxels"] * 1e6 for e, b in blockwise.items()}
    smallest, largest = min(cost), max(cost)
    print(
        json.dumps(
            {
                "model": "unet_tiny (distance), trained "
                f"{args.iterations} iterations; eval input "
                f"{blockwise[smallest]['input_shape']}, block {blockwise[smallest]['write_shape']}",
                "voxel_size_nm": [VOXEL] * 3,
                "voxels_per_s": {e: round(b["voxels_per_s"]) for e, b in blockwise.items()},
                "in_memory_voxels_per_s": {e: round(m["voxels_per_s"]) for e, m in memory.items()},
                "efficiency": {
                    e: round(blockwise[e]["voxels_per_s"] / m["voxels_per_s"], 3)
                    for e, m in memory.items()
                },
                "peak_rss_mb": {e: round(b["peak_rss_mb"], 1) for e, b in blockwise.items()},
                "rss_after_load_mb": {
                    e: round(b["rss_after_load_mb"], 1) for e, b in blockwise.items()
                },
                "seconds_per_megavoxel": {e: round(c, 3) for e, c in cost.items()},
                "cost_ratio_largest_vs_smallest": round(cost[largest] / cost[smallest], 3),
                "blocks": {e: b["blocks"] for e, b in blockwise.items()},
                "torch_threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "cpus": len(os.sched_getaffinity(0)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
