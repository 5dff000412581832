"""Benchmark blockwise instance labels as the volume grows: time, memory, objects, invariance.

Two synthetic predictions, generated chunk by chunk (memory flat at any size):

- `em`: dense EM-like cells (a Voronoi tessellation of jittered-grid seeds, cells
  about 16 voxels across at 8 nm, one-voxel membranes between them) turned into
  nearest-neighbour affinities (0.9 inside a cell, 0.1 across a membrane, Gaussian
  noise of 0.1, stored as uint8), labelled by the agglomeration route (fragments per
  block, the whole volume's region graph, mean affinity above 0.5);
- `blobs`: sparse balls (radius 4-10 voxels) as a tanh-scaled inner distance
  (`InnerDistanceTask`), labelled by the seeded distance watershed with context and
  face matching.

For each (kind, size, workers) a fresh process runs `plan_labels(...).run()` (workers
1: in that process; N: a Dask LocalCluster of N single-threaded workers) and reports
wall time, voxels per second, CPU seconds per million voxels (driver and workers, so
that a busy machine does not hide the cost), each pass's figures, the driver's peak RSS (its
`VmHWM`, the scheduler included; `ru_maxrss` would count the parent's at the spawn)
and the workers' peaks, fragments, objects and the truth's count. At the smallest size
it also labels with a second block shape and compares the two labellings
(scikit-image's adapted Rand error and VOI).

Prints one JSON document (`runs`, `block_shapes`, `projection`).

    python scripts/bench_labels.py                # 256^3 and 512^3, 2 workers
    python scripts/bench_labels.py --full         # also 1024^3
    python scripts/bench_labels.py --sizes 128 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOXEL = (8.0, 8.0, 8.0)
CHUNK = 64
CELL = 16


def seeds(n: int, seed: int = 0) -> np.ndarray:
    """Jittered-grid Voronoi seeds (voxels) filling an n^3 volume."""
    k = max(1, n // CELL)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (grid + 0.15 + 0.7 * rng.random(grid.shape)) * (n / k)


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sparse ball centres (voxels) and radii, apart from each other and the border."""
    rng = np.random.default_rng(seed)
    centres, radii = [], []
    from scipy.spatial import cKDTree

    for _ in range(int(n**3 / 40**3 * 1.5)):
        r = rng.uniform(4, 10)
        c = rng.uniform(r + 1, n - r - 1, 3)
        if centres and cKDTree(centres).query(c)[0] < r + 12:
            continue
        centres.append(c)
        radii.append(r)
    return np.array(centres), np.array(radii)


def _em_slab(path: str, n: int, z: int) -> None:
    """Write one z-slab of chunks of the EM prediction (chunks are independent)."""
    import zarr
    from scipy.spatial import cKDTree

    from dacapo_hydra.inference.encoding import encode_uint8

    tree = cKDTree(seeds(n))
    out = zarr.open_array(f"{path}/prediction/s0", mode="r+")
    for y in range(0, n, CHUNK):
        for x in range(0, n, CHUNK):
            lo = np.array([z, y, x])
            grid = np.indices((CHUNK + 2,) * 3).reshape(3, -1).T + lo - 2 + 0.5
            cell = tree.query(grid, workers=1)[1].reshape((CHUNK + 2,) * 3) + 1
            # Thin membranes: a voxel whose lower neighbour is in another cell.
            inner = cell[1:, 1:, 1:].copy()
            for axis in range(3):
                lower = tuple(slice(0, -1) if a == axis else slice(1, None) for a in range(3))
                inner[cell[1:, 1:, 1:] != cell[lower]] = 0
            rng = np.random.default_rng([n, z, y, x])
            affs = np.empty((3, CHUNK, CHUNK, CHUNK), np.float32)
            for axis in range(3):
                here = tuple(slice(1, None) for _ in range(3))
                there = tuple(slice(0, -1) if a == axis else slice(1, None) for a in range(3))
                same = (inner[here] == inner[there]) & (inner[here] != 0)
                affs[axis] = np.where(same, 0.9, 0.1)
            affs += rng.normal(0, 0.1, affs.shape).astype(np.float32)
            window = (slice(None), *(slice(o, o + CHUNK) for o in lo))
            out[window] = encode_uint8(np.clip(affs, 0, 1), (0.0, 1.0))


def write_em(path: Path, n: int, processes: int = 2) -> int:
    """The EM prediction (3 affinity channels, uint8); returns the cells (truth).

    Each z-slab of chunks is written by one of `processes` processes (the same
    bytes whatever their number: every chunk has its own random stream).
    """
    from concurrent.futures import ProcessPoolExecutor

    from dacapo_hydra.data.output import open_output
    from dacapo_hydra.data.roi import Roi

    roi = Roi((0.0,) * 3, tuple(n * v for v in VOXEL))
    open_output(
        path, "prediction", roi, VOXEL, 3, "uint8", (CHUNK,) * 3, {"value_range": [0.0, 1.0]}
    )
    slabs = range(0, n, CHUNK)
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_em_slab, [str(path)] * len(slabs), [n] * len(slabs), slabs))
    return len(seeds(n))


def write_blobs(path: Path, n: int) -> int:
    """The blobs prediction (inner distance, float32); returns the balls (truth)."""
    from scipy.spatial import cKDTree

    from dacapo_hydra.data.output import open_output
    from dacapo_hydra.data.roi import Roi
    from dacapo_hydra.tasks.inner_distance import InnerDistanceTask

    task = InnerDistanceTask(3, VOXEL)
    centres, radii = blobs(n)
    tree = cKDTree(centres)
    roi = Roi((0.0,) * 3, tuple(n * v for v in VOXEL))
    out = open_output(path, "prediction", roi, VOXEL, 1, "float32", (CHUNK,) * 3)
    for z in range(0, n, CHUNK):
        for y in range(0, n, CHUNK):
            for x in range(0, n, CHUNK):
                lo = np.array([z, y, x])
                grid = np.indices((CHUNK,) * 3).reshape(3, -1).T + lo + 0.5
                dist, which = tree.query(grid, workers=1)
                inner = np.clip(radii[which] - dist, 0, None) * VOXEL[0]
                window = (slice(None), *(slice(o, o + CHUNK) for o in lo))
                scaled = task.scale(inner.reshape((1,) + (CHUNK,) * 3))
                out[window] = scaled.astype(np.float32)
    return len(centres)


def task_and_params(kind: str) -> tuple[object, dict]:
    """The task and parameter set each kind is labelled with."""
    if kind == "em":
        from dacapo_hydra.tasks.affinities import AffinitiesTask

        task = AffinitiesTask(3, VOXEL, neighborhood=[[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
        return task, {"route": "agglomeration", "threshold": 0.5, "min_size": 20}
    from dacapo_hydra.tasks.inner_distance import InnerDistanceTask

    return InnerDistanceTask(3, VOXEL), {"seed_distance": 16.0, "min_size": 20}


def label_once(args: argparse.Namespace) -> dict:
    """One labelling in this process (the driver); prints its figures as JSON."""
    from dask.distributed import Client, LocalCluster

    from dacapo_hydra.inference.fragments import Source
    from dacapo_hydra.inference.graph import count_rows
    from dacapo_hydra.inference.labels import plan_labels
    from dacapo_hydra.inference.options import Execution

    task, params = task_and_params(args.kind)
    cluster = client = None
    execution = Execution(progress=False)
    if args.workers > 1:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0")
        client = Client(cluster)
        execution = Execution(scheduler=cluster.scheduler_address, progress=False)
    cpu_at_start = {}
    if client is not None:
        at = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF)[:2])
        cpu_at_start = {w: u[0] + u[1] for w, u in at.items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    driver_cpu_at_start = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    job = plan_labels(
        task,
        params,
        Source.open(args.prediction, "prediction"),
        args.output,
        args.dataset,
        block_shape=(args.block,) * 3,
    )
    objects = job.run(execution)
    wall = time.perf_counter() - started
    workers_rss, workers_cpu = [], []
    if client is not None:
        usage = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF)[:4])
        workers_cpu = [u[0] + u[1] - cpu_at_start.get(w, 0.0) for w, u in usage.items()]
        workers_rss = list(client.run(peak_rss_mb).values())
        client.close()
        cluster.close()
    mine = resource.getrusage(resource.RUSAGE_SELF)
    cpu = mine.ru_utime + mine.ru_stime - driver_cpu_at_start + sum(workers_cpu)
    graph = job.scratch / "graph"
    voxels = args.n**3
    return {
        "wall_s": wall,
        "voxels_per_s": voxels / wall,
        "cpu_s_per_megavoxel": cpu / voxels * 1e6,
        "driver_peak_rss_mb": peak_rss_mb(),
        "worker_peak_rss_mb": max(workers_rss) if workers_rss else None,
        "fragments": count_rows(graph, "nodes"),
        "edges": count_rows(graph, "edges"),
        "objects": int(objects),
        "passes": {
            k: {kk: vv for kk, vv in v.items() if kk != "blocks"} for k, v in job.figures.items()
        },
        "graph_bytes": sum(p.stat().st_size for p in graph.rglob("*.parquet")),
    }


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike `ru_maxrss`, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(
    kind: str, n: int, workers: int, block: int, pred: Path, out: Path, name: str
) -> dict:
    """`label_once` in a fresh process, so its peak RSS is this labelling's alone."""
    cmd = [
        sys.executable, __file__, "--child", "--kind", kind, "--n", str(n),
        "--workers", str(workers), "--block", str(block), "--prediction", str(pred),
        "--output", str(out), "--dataset", name,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} {n}^3 {workers} workers failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(out: Path, a: str, b: str) -> dict:
    """Adapted Rand error and VOI between two labellings (scikit-image)."""
    import zarr
    from skimage.metrics import adapted_rand_error, variation_of_information

    x = zarr.open_group(str(out))[f"{a}/s0"][:].astype(np.int64)
    y = zarr.open_group(str(out))[f"{b}/s0"][:].astype(np.int64)
    split, merge = variation_of_information(x, y)
    return {
        "adapted_rand_error": float(adapted_rand_error(x, y)[0]),
        "voi_split": float(split),
        "voi_merge": float(merge),
    }


def limit_calls(kind: str, block: np.ndarray) -> dict:
    """What each route computes on one block in memory (see :func:`limits`)."""
    import mwatershed

    from dacapo_hydra.tasks.instances.region_graph import fragment_edges

    task, params = task_and_params(kind)
    if kind != "em":
        return {"distance_watershed": lambda: task.post_process(block, params)}
    route = task.graph_route(params)
    offsets = [list(o) for o in route.offsets]
    return {
        "fragments": lambda: route.fragments(block),
        "fragments+edges": lambda: fragment_edges(route.fragments(block), block, offsets),
        "mwatershed": lambda: mwatershed.agglom(block.astype(np.float64) - 0.5, offsets),
    }


def limits(folder: Path) -> dict:
    """Voxels per second on one 64^3 block in memory, one thread, no I/O: the routes' limit.

    The agglomeration route's fragments (scikit-image's watershed from the maxima of
    edt's distance transform), with its region-graph rows, mwatershed's mutex
    watershed on the same affinities, and the blobs' seeded watershed.
    """
    from dacapo_hydra.inference.fragments import Source

    out = {}
    for kind in ("em", "blobs"):
        pred = folder / f"{kind}_limit.zarr"
        (write_em if kind == "em" else write_blobs)(pred, CHUNK)
        source = Source.open(pred, "prediction")
        block = source.read(source.array(), source.roi)
        for name, call in limit_calls(kind, block).items():
            call()
            times = []
            for _ in range(3):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            out[f"{kind}_{name}_voxels_per_s"] = CHUNK**3 / min(times)
    return out


def projection(runs: list[dict]) -> dict:
    """Time, driver memory and storage for 10^12 voxels, from the largest runs' rates."""
    out = {}
    for kind in sorted({r["kind"] for r in runs}):
        mine = [r for r in runs if r["kind"] == kind]
        big = max(mine, key=lambda r: (r["n"], r["workers"]))
        voxels = big["n"] ** 3
        per_worker = big["voxels_per_s"] / big["workers"]
        out[kind] = {
            "assumptions": (
                f"throughput per worker as at {big['n']}^3 with {big['workers']} workers "
                "(scales with workers while storage keeps up); driver memory as measured "
                "(flat in the volume); graph storage and solve edges proportional to voxels"
            ),
            "hours_on_100_workers": 1e12 / (per_worker * 100) / 3600,
            "hours_on_1000_workers": 1e12 / (per_worker * 1000) / 3600,
            "driver_peak_rss_mb": big["driver_peak_rss_mb"],
            "graph_storage_gb": big["graph_bytes"] * 1e12 / voxels / 1e9,
            "solve_edges": big["edges"] * 1e12 / voxels,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--full", action="store_true", help="also 1024^3")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--kinds", nargs="+", default=["em", "blobs"])
    parser.add_argument("--block", type=int, default=CHUNK)
    parser.add_argument("--second-block", type=int, default=2 * CHUNK)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prediction", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.workers = args.workers[0]
        print(json.dumps(label_once(args)))
        return
    sizes = sorted(set(args.sizes + ([1024] if args.full else [])))
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_labels_"))
    runs, shapes = [], []
    for kind in args.kinds:
        for n in sizes:
            pred = folder / f"{kind}_{n}.zarr"
            started = time.perf_counter()
            truth = (write_em if kind == "em" else write_blobs)(pred, n)
            generated = time.perf_counter() - started
            for workers in args.workers:
                out = folder / f"{kind}_{n}_{workers}_labels.zarr"
                figures = run_child(kind, n, workers, args.block, pred, out, "labels")
                figures.update(kind=kind, n=n, workers=workers, truth=truth)
                figures["generate_s"] = generated
                runs.append(figures)
                print(json.dumps(figures), file=sys.stderr)
            if n == sizes[0]:
                out = folder / f"{kind}_{n}_{args.workers[-1]}_labels.zarr"
                route = "agglomeration" if kind == "em" else "distance_watershed"
                run_child(kind, n, args.workers[-1], args.second_block, pred, out, "second")
                entry = {"kind": kind, "route": route, "n": n}
                entry["blocks"] = [args.block, args.second_block]
                entry.update(compare(out, "labels", "second"))
                shapes.append(entry)
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                "voxel_size": VOXEL,
                "block": args.block,
                "runs": runs,
                "block_shapes": shapes,
                "limits_one_thread": limits(folder),
                "projection": projection(runs),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
