"""Blockwise labels at scale's edges: the Dask-dataframe solve, and kill -9 in every pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from dacapo_hydra.data.output import LEDGER_DIR, open_output
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.fragments import Source
from dacapo_hydra.inference.labels import plan_labels
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.inner_distance import InnerDistanceTask
from tests.test_blockwise_labels import VOXEL, objects, write_prediction
from tests.test_blockwise_size_filter import volume

QUIET = Execution(progress=False)
OFFSETS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "params",
    [
        {"route": "agglomeration", "threshold": 0.5, "min_size": 5},
        {"route": "mutex", "bias": 0.5, "min_size": 5},
        {"seed_distance": 5.0, "min_size": 5},
    ],
    ids=lambda p: str(p.get("route", "distance")),
)
def test_the_dask_dataframe_solve_gives_the_in_memory_solves_labels(
    params: dict, tmp_path: Path
) -> None:
    if "route" in params:
        task = AffinitiesTask(3, VOXEL, object_radius=32.0)
        gt = objects()
        affs, _ = task.affinities(gt, np.ones(gt.shape))
        noise = np.random.default_rng(0).normal(0, 0.05, affs.shape)
        prediction = np.clip(affs * 0.8 + 0.1 + noise, 0, 1)
    else:
        task = InnerDistanceTask(3, VOXEL, min_sizes=[0, 5])
        prediction = task.scale(task.distances(volume()))
    write_prediction(tmp_path / "pred.zarr", prediction.astype(np.float32))
    labels, figures = [], []
    for name, limit in (("memory", 1 << 25), ("dask", 0)):
        job = plan_labels(
            task,
            params,
            Source.open(tmp_path / "pred.zarr", "prediction"),
            tmp_path / "out.zarr",
            name,
            block_shape=(12, 12, 12),
        )
        job.max_memory_edges = limit
        job.run(QUIET)
        labels.append(zarr.open_group(str(tmp_path / "out.zarr"))[f"{name}/s0"][:])
        figures.append(job.figures["solve"])
    assert figures[0]["method"].startswith("scipy") and figures[1]["method"].startswith("label")
    assert figures[0]["objects"] == figures[1]["objects"] >= 4
    np.testing.assert_array_equal(labels[0], labels[1])  # the same ids, not only the partition


def em_prediction(path: Path, shape: tuple[int, ...], chunk: int) -> None:
    """Voronoi cells with one-voxel membranes as noisy nearest-neighbour affinities."""
    rng = np.random.default_rng(3)
    seeds = np.zeros(shape, np.int32)
    count = int(np.prod(shape) / 6**3)
    seeds[tuple(rng.integers(0, s, count) for s in shape)] = np.arange(1, count + 1)
    _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[tuple(nearest)]
    membrane = np.zeros(shape, bool)
    for axis in range(3):
        membrane |= np.diff(cells, axis=axis, prepend=np.take(cells, [0], axis=axis)) != 0
    cells[membrane] = 0
    task = AffinitiesTask(3, VOXEL, neighborhood=OFFSETS)
    affs, _ = task.affinities(cells, np.ones(shape))
    affs = np.clip(affs * 0.8 + 0.1 + rng.normal(0, 0.1, affs.shape), 0, 1).astype(np.float32)
    roi = Roi((0.0,) * 3, tuple(s * v for s, v in zip(shape, VOXEL, strict=True)))
    open_output(path, "prediction", roi, VOXEL, 3, "float32", (chunk,) * 3)[...] = affs


SCRIPT = """
import sys
from dacapo_hydra.inference.fragments import Source
from dacapo_hydra.inference.labels import plan_labels
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.tasks.affinities import AffinitiesTask

task = AffinitiesTask(3, (8.0, 8.0, 8.0), neighborhood=[[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
params = {"route": sys.argv[3], "threshold": 0.5, "bias": 0.5, "min_size": 4}
job = plan_labels(task, params, Source.open(sys.argv[1], "prediction"), sys.argv[2], "labels",
                  block_shape=(8, 8, 8))
job.blocks_per_part = 2
print(job.run(Execution(progress=False)))
"""


def started(scratch: Path, stage: str) -> bool:
    """Whether the pass `stage` has recorded a finished block."""
    if stage == "relabel":
        log = scratch / "relabel.log"
        return log.exists() and log.stat().st_size >= 8
    manifests = scratch / "graph" / "_parts" / stage
    return manifests.exists() and any(manifests.glob("*.json"))


@pytest.mark.slow
@pytest.mark.parametrize("route", ["agglomeration", "mutex"])
def test_kill_9_in_each_pass_then_rerun_gives_the_same_labels(route: str, tmp_path: Path) -> None:
    em_prediction(tmp_path / "pred.zarr", (24, 48, 48), 8)
    script = tmp_path / "labels.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def run(out: str) -> subprocess.Popen:
        cmd = [sys.executable, str(script), str(tmp_path / "pred.zarr"), out, route]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    reference = run(str(tmp_path / "whole.zarr"))
    assert reference.wait(300) == 0, reference.stderr.read().decode()[-2000:]
    out = tmp_path / "killed.zarr"
    scratch = out / LEDGER_DIR / "labels"
    killed = []
    for stage in ("fragments", "faces", "relabel"):
        job = run(str(out))
        deadline = time.time() + 120
        while job.poll() is None and not started(scratch, stage) and time.time() < deadline:
            time.sleep(0.005)
        if job.poll() is None:
            job.send_signal(signal.SIGKILL)
            killed.append(stage)
        job.wait(60)
    assert "fragments" in killed, f"killed in {killed} only"
    final = run(str(out))
    assert final.wait(300) == 0, final.stderr.read().decode()[-2000:]
    want = zarr.open_group(str(tmp_path / "whole.zarr"))["labels/s0"][:]
    got = zarr.open_group(str(out))["labels/s0"][:]
    assert want.max() > 10
    np.testing.assert_array_equal(got, want)
    assert (scratch / "graph" / "nodes").is_dir() and (scratch / "complete").exists()
