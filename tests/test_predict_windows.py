"""'Same'-padding prediction runs each window of one sliding-window pass once; the pipeline."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from monai.data.utils import dense_patch_slices

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.inference.blocks import StagedWorker
from dacapo_hydra.inference.ledgers import BlockLog
from dacapo_hydra.inference.options import Execution, PredictOptions
from dacapo_hydra.inference.predict import plan_prediction
from dacapo_hydra.inference.schedule import run_blocks
from dacapo_hydra.model.grid import Block, BlockGrid
from dacapo_hydra.model.windows import WindowCache, WindowGrid
from dacapo_hydra.training.build import build

QUIET = Execution(progress=False)


@pytest.mark.parametrize(
    ("shape", "window", "overlap"),
    [((100, 90), (32, 32), 0.25), ((20, 30, 7), (16, 8, 8), 0.5), ((5,), (8,), 0.5)],
)
def test_windows_are_monais(
    shape: tuple[int, ...], window: tuple[int, ...], overlap: float
) -> None:
    grid = WindowGrid.over(shape, window, overlap)
    padded = tuple(max(s, w) for s, w in zip(shape, window, strict=True))
    interval = tuple(
        w if w == p else int(w * (1 - overlap)) for w, p in zip(window, padded, strict=True)
    )
    monai = dense_patch_slices(padded, window, interval, return_slice=False)
    shift = [(p - s) // 2 for p, s in zip(padded, shape, strict=True)]
    expected = [tuple(a - d for (a, _), d in zip(w, shift, strict=True)) for w in monai]
    assert list(itertools.product(*grid.starts)) == expected
    everything = tuple(slice(0, s) for s in shape)
    assert grid.touching(everything) == expected


def counting(forward: Callable[[torch.Tensor], torch.Tensor], calls: list[int]) -> Callable:
    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return forward(x)

    return counted


def test_each_window_runs_once_however_many_blocks_touch_it(compose_tiny, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = build(
        compose_tiny(
            datasplit="synthetic_2d",
            architecture="monai_basic_unet",
            overrides=["architecture.network.features=[4,4,4,4,4,4]"],
        )
    ).module.model.eval()
    vs = list(module.spec.voxel_size)
    vol = write_synthetic(tmp_path / "vol.zarr", 2, [100, 90], vs, [0, 0])
    options = PredictOptions(input_shape=(32, 32), overlap=0.5, block_shape=(16, 16))
    job = plan_prediction(module, vol, "validate/raw", tmp_path / "out.zarr", "p", options=options)
    calls: list[int] = []
    module.forward = counting(module.forward, calls)
    result = job.run(QUIET)
    raw = ZarrArray.open(vol, "validate/raw")
    windows = WindowGrid.over(raw.spatial_shape, (32, 32), 0.5)
    assert result.blocks == 7 * 6
    assert sum(calls) == np.prod([len(s) for s in windows.starts]) == 6 * 5
    runner = job.predictor.opened[0]
    assert runner.cache.nbytes == 0  # every window went once its last block used it
    assert max(calls) == 2  # two windows per forward pass (the default window_batch)
    one = PredictOptions(input_shape=(32, 32), overlap=0.5, block_shape=(16, 16), window_batch=1)
    calls.clear()
    plan_prediction(module, vol, "validate/raw", tmp_path / "out.zarr", "q", options=one).run(QUIET)
    assert set(calls) == {1} and sum(calls) == 6 * 5
    group = zarr.open_group(str(tmp_path / "out.zarr"))
    np.testing.assert_allclose(group["q/s0"][:], group["p/s0"][:], atol=1e-5)


def test_a_cache_over_budget_recomputes_but_blends_the_same(tmp_path: Path) -> None:
    grid = WindowGrid.over((10,), (4,), 0.5)
    cache = WindowCache(lambda s: grid.blocks_touched(s, (2,), (5,)), max_bytes=16)
    mine, futures = cache.claim([(0,), (2,)])
    assert mine == [(0,), (2,)]
    again, waiting = cache.claim([(2,)])
    assert again == [] and waiting[(2,)] is futures[(2,)]  # in flight: wait, don't compute
    for start in mine:
        cache.put(start, torch.ones(4))  # 16 bytes each: only the latest is kept
    assert cache.nbytes == 16 and futures[(0,)].result().sum() == 4
    assert cache.claim([(0,)])[0] == [(0,)]  # evicted: computed again


class Doubler(StagedWorker[dict, np.ndarray, np.ndarray]):
    """Reads a block's index, doubles it, records it; fails on `bad`."""

    def __init__(self, bad: tuple[int, ...] | None = None) -> None:
        self.bad = bad

    def open(self) -> dict:
        return {}

    def load(self, block: Block) -> np.ndarray:
        return np.asarray(block.index)

    def compute(self, block: Block, loaded: np.ndarray) -> np.ndarray:
        if block.index == self.bad:
            raise RuntimeError(f"block {block.name} failed")
        return loaded * 2

    def store(self, block: Block, computed: np.ndarray) -> int:
        self.opened[block.index] = computed
        return 1


def test_the_pipeline_does_every_block_and_stops_at_a_failure(tmp_path: Path) -> None:
    grid = BlockGrid(Roi((0, 0), (40, 30)), (10, 10), (0, 0))
    blocks = list(grid)
    worker = Doubler()
    figures = run_blocks(worker, grid, BlockLog(tmp_path / "a.log", grid), QUIET)
    assert figures["voxels"] == len(blocks) == 12
    assert all((worker.opened[b.index] == np.multiply(b.index, 2)).all() for b in blocks)
    ledger = BlockLog(tmp_path / "b.log", grid)
    with pytest.raises(RuntimeError, match="block 2_1 failed"):
        run_blocks(Doubler(bad=(2, 1)), blocks, ledger, QUIET)
    assert not ledger.is_done(blocks[7]) and ledger.count() < len(blocks)


class OpenCounter(StagedWorker[int, int, int]):
    """Appends its process id to `log` each time it opens (a model load, in a predictor)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def open(self) -> int:
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return 0

    def load(self, block: Block) -> int:
        return self.opened

    def compute(self, block: Block, loaded: int) -> int:
        return loaded + 1

    def store(self, block: Block, computed: int) -> int:
        return computed


@pytest.mark.slow
def test_each_dask_worker_opens_the_model_once_not_once_per_block(tmp_path: Path) -> None:
    blocks = list(BlockGrid(Roi((0, 0), (40, 40)), (10, 10), (0, 0)))
    log = tmp_path / "opens.log"
    figures = run_blocks(OpenCounter(log), blocks, None, Execution(workers=2, progress=False))
    opens = log.read_text().split()
    assert figures["voxels"] == len(blocks) == 16
    assert len(opens) == len(set(opens)) <= 2


@pytest.mark.slow
def test_blocks_wait_for_a_schedulers_workers_that_join_late(tmp_path: Path) -> None:
    """A SLURM cluster's workers may still be queued when the job starts."""
    from dask.distributed import LocalCluster

    blocks = list(BlockGrid(Roi((0, 0), (20, 20)), (10, 10), (0, 0)))
    log = tmp_path / "opens.log"
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:
        execution = Execution(scheduler=cluster.scheduler_address, progress=False)
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(run_blocks, OpenCounter(log), blocks, None, execution)
            time.sleep(1.0)
            assert not job.done()
            cluster.scale(1)
            assert job.result(timeout=120)["voxels"] == len(blocks) == 4
    assert len(log.read_text().split()) == 1
