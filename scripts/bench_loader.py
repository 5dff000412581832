"""Benchmark the training data pipeline: crop + augment + targets, and peak memory.

Prints one JSON document:
- `samples_per_s`: samples/s of the full pipeline (random crop from zarr, control-point
  elastic + rotation, mirror/transpose, intensity, distance targets and weights) for a
  132³ raw / 40³ gt crop from a 256³ zarr at 8 nm, with 0 and 2 DataLoader workers,
  with and without the elastic warp;
- `peak_rss_mb`: peak resident memory of a fresh process sampling such crops (with the
  elastic warp) from a 1024³ uint8 volume.

Not a test: figures depend on the machine. Usage:
    python scripts/bench_loader.py [--samples 40] [--workdir /tmp/bench_loader]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from omegaconf import OmegaConf
from scipy import ndimage
from torch.utils.data import DataLoader

from dacapo_hydra.data.augment import build_augment, build_deformation
from dacapo_hydra.data.datamodule import TrainCrops
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.sampler import CropSampler, CropShapes
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.training.build import TaskTargets

VOXEL = 8.0
INPUT, OUTPUT = 132, 40


def augment_cfg(elastic: bool) -> dict:
    """The augmentations benchmarked (gunpowder's ElasticAugment/SimpleAugment/IntensityAugment)."""
    return {
        "mirror_prob": 0.5,
        "transpose_prob": 0.5,
        "intensity_prob": 1.0,
        "intensity_scale": 0.1,
        "intensity_shift": 0.1,
        "elastic": {
            "prob": 1.0 if elastic else 0.0,
            "control_point_spacing": 100.0,
            "jitter_sigma": 10.0,
        },
        "rotation": {"prob": 1.0 if elastic else 0.0, "max_degrees": 90.0, "planes": "yx"},
    }


def write_volume(path: Path, shape: int, chunk: int, seed: int = 0, smooth: bool = True) -> None:
    """A uint8 raw and uint8 label volume, written in slabs (never whole in memory).

    `smooth` gives blob-shaped objects (Gaussian-filtered noise, thresholded); without
    it, objects are cubes, which is much quicker to write for the 1024³ volume.
    """
    if (path / "zarr.json").exists():
        return
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    raw = root.create_array("raw", shape=(shape,) * 3, chunks=(chunk,) * 3, dtype="uint8")
    gt = root.create_array("gt", shape=(shape,) * 3, chunks=(chunk,) * 3, dtype="uint8")
    for name in ("raw", "gt"):
        root[name].attrs.update({"voxel_size": [VOXEL] * 3, "offset": [0.0] * 3})
    rng = np.random.default_rng(seed)
    slab = min(shape, chunk)
    for z in range(0, shape, slab):
        if smooth:
            noise = rng.normal(size=(slab, shape, shape)).astype(np.float32)
            labels = (ndimage.gaussian_filter(noise, 4) > 0.02).astype(np.uint8)
        else:
            zz, yy, xx = np.ogrid[z : z + slab, :shape, :shape]
            labels = ((zz // 24 + yy // 24 + xx // 24) % 2).astype(np.uint8)
        labels *= np.uint8(1 + (z // slab) % 200)
        gt[z : z + slab] = labels
        noise8 = rng.integers(0, 40, labels.shape, dtype=np.uint8)
        raw[z : z + slab] = np.where(labels > 0, 180, 100).astype(np.uint8) + noise8


def make_loader(path: Path, elastic: bool, workers: int, seed: int = 0) -> DataLoader:
    """The training loader over one dataset, as VolumeDataModule builds it."""
    split = DataSplit.from_config(
        {
            "dims": 3,
            "train": [
                {
                    "name": "bench",
                    "raw": {"container": str(path), "dataset": "raw"},
                    "gt": {"container": str(path), "dataset": "gt"},
                }
            ],
        }
    )
    shapes = CropShapes((INPUT,) * 3, (OUTPUT,) * 3, (VOXEL,) * 3)
    cfg = OmegaConf.create(augment_cfg(elastic))
    deformation = build_deformation(cfg, 3, shapes.voxel_size, shapes.input_shape)
    sampler = CropSampler(split.train, split, shapes, deformation)
    augment = build_augment(cfg, 3, shapes.input_shape, shapes.output_shape, shapes.voxel_size)
    task = DistanceTask(3, (VOXEL,) * 3)
    data = TrainCrops(sampler, TaskTargets(task), augment, seed)
    return DataLoader(data, batch_size=1, num_workers=workers, persistent_workers=workers > 0)


def throughput(path: Path, elastic: bool, workers: int, samples: int) -> float:
    """Samples/s after a short warm-up (workers started, first chunks read)."""
    loader = iter(make_loader(path, elastic, workers))
    for _ in range(max(2, workers * 2)):
        batch = next(loader)
    assert batch["raw"].shape[-3:] == (INPUT,) * 3 and batch["target"].shape[-3:] == (OUTPUT,) * 3
    start = time.perf_counter()
    for _ in range(samples):
        next(loader)
    rate = samples / (time.perf_counter() - start)
    del loader
    return rate


def rss_child(path: Path, samples: int) -> None:
    """In a fresh process: sample with the elastic warp, print peak RSS (MB)."""
    imports_mb = peak_rss_mb()
    loader = iter(make_loader(path, elastic=True, workers=0))
    for _ in range(samples):
        next(loader)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "imports_rss_mb": imports_mb}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB).

    Read from /proc (VmHWM) where there is one: getrusage's ru_maxrss keeps the
    parent's peak across fork and exec, which would count the volume writer.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rss-samples", type=int, default=20)
    parser.add_argument("--workdir", default="/tmp/bench_loader")
    parser.add_argument("--big", type=int, default=1024, help="edge of the RSS volume")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(Path(args.rss_child), args.rss_samples)
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    small, big = work / "vol256.zarr", work / f"vol{args.big}.zarr"
    write_volume(small, 256, 64)
    rates = {}
    for elastic in (True, False):
        for workers in (0, 2):
            key = f"{'elastic' if elastic else 'no_elastic'}_workers{workers}"
            rates[key] = round(throughput(small, elastic, workers, args.samples), 2)
    start = time.perf_counter()
    write_volume(big, args.big, 64, smooth=False)
    written = time.perf_counter() - start
    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(big), "--rss-samples", str(args.rss_samples)],
        capture_output=True,
        text=True,
        check=True,
    )
    rss = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "input_shape": [INPUT] * 3,
                "output_shape": [OUTPUT] * 3,
                "voxel_size_nm": [VOXEL] * 3,
                "volume": [256] * 3,
                "augment": augment_cfg(True),
                "samples": args.samples,
                "samples_per_s": rates,
                "rss_volume": [args.big] * 3,
                "rss_volume_uncompressed_mb": args.big**3 * 2 / 2**20,
                "rss_volume_write_s": round(written, 1),
                "peak_rss_mb": round(rss["peak_rss_mb"], 1),
                "rss_after_imports_mb": round(rss["imports_rss_mb"], 1),
                "torch_threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "cpus": len(__import__("os").sched_getaffinity(0)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
