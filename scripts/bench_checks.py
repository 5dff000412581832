"""Benchmark the data checks run before training (dacapo_hydra.data.checks).

Writes one dataset (raw, instance labels, mask; 64³ chunks, zstd, zarr 3) of
`--size`³ voxels and prints one JSON document with the seconds and what was
touched, for uint8 and float32 raw:

- `chunk_index_s`: the chunk-index pass over raw, gt and mask (keys only);
- `raw_sample_s`: decoding the raw sample (and, for float32, the NaN/inf search);
- `labels_s`: the search for an object in the labels (objects everywhere: one chunk);
- `empty_labels_s`: the same search on all-zero labels stored densely (the worst
  case: every chunk is read), and on labels whose empty chunks zarr did not write;
- `total_s`: :func:`check_split` as a run calls it, whole raw checked;
- `corner_of_8192_cubed_s`: :func:`check_split` on labels in a corner of a huge raw,
  whose region used is a few chunks (asked for key by key, not listed).

Not a test: figures depend on the machine and its disk cache. Usage:
    python scripts/bench_checks.py [--size 512] [--workdir /tmp/bench_checks]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from dacapo_hydra.data.checks import check_labels, check_split
from dacapo_hydra.data.chunk_checks import Cost, check_chunks, check_raw_sample
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.errors import DataError

CHUNK = 64
VOXEL = 8.0


def write(path: Path, size: int, dtype: str) -> None:
    """A container with raw of `dtype`, labels with objects, empty labels, and a mask."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    rng = np.random.default_rng(0)
    shape = (size,) * 3
    raw = rng.integers(0, 255, shape, dtype=np.uint8).astype(dtype)
    labels = (np.indices(shape) // 16).sum(0).astype(np.uint32) + 1
    arrays = {
        "raw": (raw, True),
        "labels": (labels, False),
        "empty_dense": (np.zeros(shape, np.uint32), True),
        "empty_sparse": (np.zeros(shape, np.uint32), False),
        "mask": (np.ones(shape, np.uint8), False),
    }
    for name, (data, dense) in arrays.items():
        array = root.create_array(
            name,
            shape=shape,
            chunks=(CHUNK,) * 3,
            dtype=data.dtype,
            config={"write_empty_chunks": dense},
        )
        array[...] = data
        array.attrs.update({"voxel_size": [VOXEL] * 3, "offset": [0.0] * 3})


def timed(run: Callable[[], object]) -> float:
    """Seconds `run` takes."""
    started = time.perf_counter()
    run()
    return round(time.perf_counter() - started, 3)


def bench(path: Path) -> dict[str, object]:
    """Time each check on the container at `path`."""

    def spec(name: str) -> dict[str, str]:
        return {"container": str(path), "dataset": name}

    def split(gt: str) -> DataSplit:
        entry = {"name": gt, "raw": spec("raw"), "gt": spec(gt), "mask": spec("mask")}
        return DataSplit.from_config(
            {"dims": 3, "train": [entry], "normalize": {"mode": "minmax", "min": 0, "max": 255}}
        )

    dataset = split("labels").train[0]
    region = dataset.labelled_roi
    cost = Cost()
    out: dict[str, object] = {
        "chunk_index_s": timed(
            lambda: [
                check_chunks(a, region, "x", cost) for a in (dataset.raw, dataset.gt, dataset.mask)
            ]
        ),
        "raw_sample_s": timed(lambda: check_raw_sample(dataset.raw, region, "x", cost=cost)),
        "labels_s": timed(lambda: check_labels(dataset, region, "x", cost)),
    }
    for name in ("empty_dense", "empty_sparse"):
        empty = split(name).train[0]
        started = time.perf_counter()
        # Refused, as it should be: the time it takes to find out is what counts.
        with contextlib.suppress(DataError):
            check_labels(empty, region, "x", cost)
        out[f"{name}_labels_s"] = round(time.perf_counter() - started, 3)
    whole = split("labels")
    out["total_s"] = timed(lambda: check_split(whole))
    out["cost"] = vars(cost)
    return out


def bench_large(path: Path) -> dict[str, object]:
    """check_split on 256³ labels in a corner of a 8192³ raw (2**21 chunks, 125 stored).

    Only the region used (labels grown by a 128 nm margin) is asked for, key by key.
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    raw = root.create_array(
        "raw", shape=(8192,) * 3, chunks=(CHUNK,) * 3, dtype="uint8", fill_value=0
    )
    raw[:320, :320, :320] = np.random.default_rng(0).integers(1, 255, (320,) * 3, np.uint8)
    gt = root.create_array("gt", shape=(256,) * 3, chunks=(CHUNK,) * 3, dtype="uint32")
    gt[...] = 1
    for array in (raw, gt):
        array.attrs.update({"voxel_size": [VOXEL] * 3, "offset": [0.0] * 3})
    entry = {
        "name": "corner",
        "raw": {"container": str(path), "dataset": "raw"},
        "gt": {"container": str(path), "dataset": "gt"},
    }
    split = DataSplit.from_config(
        {"dims": 3, "train": [entry], "normalize": {"mode": "minmax", "min": 0, "max": 255}}
    )
    return {"corner_of_8192_cubed_s": timed(lambda: check_split(split, (128.0,) * 3))}


def main() -> None:
    """Write the containers, time the checks, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_checks"))
    args = parser.parse_args()
    results: dict[str, object] = {"size": args.size, "chunk": CHUNK, "machine": platform.node()}
    for dtype in ("uint8", "float32"):
        path = args.workdir / f"{dtype}_{args.size}.zarr"
        if not path.exists():
            write(path, args.size, dtype)
        results[dtype] = bench(path)
    results.update(bench_large(args.workdir / "large.zarr"))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
