"""DaCapo's training-crop pipeline on gunpowder: the reference bench_loader.py compares against.

Run by `scripts/bench_loader.py --dacapo-python PYTHON` with a Python that has
gunpowder (and its zarr 2, numpy, scipy), never imported by dacapo_hydra: its
venv need not have torch. It times, on one thread, what DaCapo's
GunpowderTrainer does per sample with the same shapes and augmentations as
bench_loader.py: ZarrSource (raw, gt) -> Normalize -> Pad -> RandomLocation ->
ElasticAugment (control points 100 nm apart, jitter 10 nm, rotation in
[0, pi/2), `subsample` as given) -> SimpleAugment -> IntensityAugment -> the
targets of DaCapo's DistancePredictor (signed distances from label boundaries
found on a doubled grid, scipy EDT, tanh, class-balanced weights, distances
masked where the crop cannot know them), re-stated here because dacapo-ml
itself is not installed. Prints one JSON line: samples/s and CPU s per sample after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib.metadata import version

import gunpowder as gp
import numpy as np
from scipy.ndimage import distance_transform_edt

VOXEL = 8
SCALE, CLIP, TOL = 50.0, 100.0, 40.0  # DaCapo's DistanceTask defaults (nm) at 8 nm


def boundaries(labels: np.ndarray) -> np.ndarray:
    """DaCapo's `__find_boundaries`: label changes on the doubled (2n - 1) grid."""
    dims = labels.ndim
    out = np.zeros(tuple(2 * s - 1 for s in labels.shape), bool)
    for d in range(dims):
        here = tuple(slice(1, s) if i == d else slice(None) for i, s in enumerate(labels.shape))
        there = tuple(
            slice(0, s - 1) if i == d else slice(None) for i, s in enumerate(labels.shape)
        )
        target = [slice(None, None, 2)] * dims
        target[d] = slice(1, None, 2)
        out[tuple(target)] = labels[here] != labels[there]
    return out


def signed_distances(channel: np.ndarray, voxel_size: tuple[float, ...]) -> np.ndarray:
    """DaCapo's DistancePredictor.process for one channel (nm, clipped, tanh-scaled)."""
    inverse = 1.0 - boundaries(channel)
    if not (inverse == 0).any():
        distance = min(s * v / 2 for s, v in zip(channel.shape, voxel_size, strict=True))
        d = np.full(channel.shape, distance if channel.any() else -distance, np.float32)
    else:
        d = distance_transform_edt(inverse, sampling=tuple(v / 2 for v in voxel_size))
        d = d.astype(np.float32)[(slice(None, None, 2),) * channel.ndim]
        d[channel == 0] = -d[channel == 0]
    return np.tanh(np.clip(d, -CLIP, CLIP) / SCALE)


def targets(gt: np.ndarray, mask: np.ndarray, voxel_size: tuple[float, ...]) -> tuple:
    """Target and weight as DaCapo's DistancePredictor makes them (one class: foreground)."""
    target = signed_distances((gt > 0).astype(np.uint8), voxel_size)[None]
    # Where the distance is knowable: the mask's own distance to its edge (DaCapo's
    # __create_distance_mask), plus tolerance.
    padded = np.pad(mask, 1)
    to_edge = distance_transform_edt(padded, sampling=voxel_size)[(slice(1, -1),) * gt.ndim]
    known = (np.abs(np.arctanh(np.clip(target[0], -0.999, 0.999)) * SCALE) <= to_edge + TOL) * mask
    fg = target > 0
    frac = np.clip(fg[known[None] > 0].mean() if known.any() else 0.5, 0.05, 0.95)
    weight = np.where(fg, 1 / frac, 1 / (1 - frac)) * known[None] / 2
    return target, weight.astype(np.float32)


def pipeline(path: str, input_shape: int, output_shape: int, subsample: int) -> tuple:
    raw, gt = gp.ArrayKey("RAW"), gp.ArrayKey("GT")
    source = gp.ZarrSource(
        path,
        {raw: "raw", gt: "gt"},
        {
            raw: gp.ArraySpec(voxel_size=gp.Coordinate((VOXEL,) * 3), interpolatable=True),
            gt: gp.ArraySpec(voxel_size=gp.Coordinate((VOXEL,) * 3), interpolatable=False),
        },
    )
    p = source + gp.Normalize(raw) + gp.Pad(raw, None) + gp.RandomLocation()
    p += gp.ElasticAugment(
        control_point_spacing=(100 // VOXEL,) * 3,
        jitter_sigma=(10 / VOXEL,) * 3,
        rotation_interval=(0, np.pi / 2),
        subsample=subsample,
    )
    p += gp.SimpleAugment()
    p += gp.IntensityAugment(raw, 0.9, 1.1, -0.1, 0.1)
    request = gp.BatchRequest()
    request.add(raw, (input_shape * VOXEL,) * 3)
    request.add(gt, (output_shape * VOXEL,) * 3)
    return p, request, raw, gt


def main() -> None:
    """Time the pipeline and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volume", help="zarr v2 container with raw and gt (resolution, offset)")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--input", type=int, default=132)
    parser.add_argument("--output", type=int, default=40)
    parser.add_argument("--subsample", type=int, default=8)
    args = parser.parse_args()
    p, request, raw, gt = pipeline(args.volume, args.input, args.output, args.subsample)
    vs = (float(VOXEL),) * 3
    with gp.build(p):
        for i in range(args.warmup + args.samples):
            if i == args.warmup:
                start, cpu = time.perf_counter(), time.process_time()
            batch = p.request_batch(request)
            labels = batch[gt].data
            target, weight = targets(labels, np.ones(labels.shape, np.uint8), vs)
            assert batch[raw].data.shape == (args.input,) * 3 and target.shape[1:] == labels.shape
        rate = args.samples / (time.perf_counter() - start)
        cpu_per_sample = (time.process_time() - cpu) / args.samples
    print(
        json.dumps(
            {
                "samples_per_s": rate,
                "cpu_s_per_sample": cpu_per_sample,
                "subsample": args.subsample,
                "gunpowder": version("gunpowder"),
                "threads": os.environ.get("OMP_NUM_THREADS"),
            }
        )
    )


if __name__ == "__main__":
    main()
