"""The size filter of instance routes is global: the same labels at any block size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from skimage.metrics import adapted_rand_error

from dacapo_hydra.inference.fragments import Source
from dacapo_hydra.inference.labels import post_process_blockwise
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.inner_distance import InnerDistanceTask
from tests.test_blockwise_labels import VOXEL, objects, same_partition, write_prediction

QUIET = Execution(progress=False)


def volume() -> np.ndarray:
    gt = objects()
    gt[11:13, 23:25, 23:25] = 0
    gt[0:2, 23:25, 23:25] = 6  # 8 voxels, 1 in each of the 8 blocks of 12^3 around a corner
    gt[22:23, 40:41, 2:5] = 7  # 3 voxels inside one block
    return gt


@pytest.fixture(scope="module")
def prediction(tmp_path_factory: pytest.TempPathFactory) -> tuple[InnerDistanceTask, Path]:
    task = InnerDistanceTask(3, VOXEL, min_sizes=[0, 5])
    path = tmp_path_factory.mktemp("sizes") / "pred.zarr"
    write_prediction(path, task.scale(task.distances(volume())).astype(np.float32))
    return task, path


@pytest.mark.parametrize("block", [(12, 12, 12), (24, 24, 24)])
def test_blockwise_size_filter_equals_whole_volume(
    prediction: tuple[InnerDistanceTask, Path], block: tuple[int, ...], tmp_path: Path
) -> None:
    task, path = prediction
    params = {"seed_distance": 5.0, "min_size": 5}
    source = Source.open(path, "prediction")
    whole = task.post_process(source.read(source.array(), source.roi), params)
    gt = volume()
    assert whole[0][gt == 7].max() == 0  # 3 voxels: filtered
    assert np.unique(whole[0][gt == 6]).size == 1 and whole[0][gt == 6][0] != 0  # 8 kept
    out = tmp_path / "out.zarr"
    result = post_process_blockwise(
        task, params, path, "prediction", out, "labels", block_shape=block, execution=QUIET
    )
    labels = zarr.open_group(str(tmp_path / "out.zarr"))["labels/s0"][:]
    assert same_partition(labels, whole)
    assert result.objects == len(np.unique(whole)) - 1 == 6
    assert sorted(np.unique(labels)) == list(range(result.objects + 1))


@pytest.fixture(scope="module")
def affinities(tmp_path_factory: pytest.TempPathFactory) -> tuple[AffinitiesTask, Path]:
    gt = objects()
    task = AffinitiesTask(3, VOXEL, object_radius=32.0)
    affs, _ = task.affinities(gt, np.ones(gt.shape))
    noise = np.random.default_rng(0).normal(0, 0.05, affs.shape)
    path = tmp_path_factory.mktemp("affinities") / "pred.zarr"
    write_prediction(path, np.clip(affs * 0.8 + 0.1 + noise, 0, 1).astype(np.float32))
    return task, path


@pytest.mark.parametrize(
    "params",
    [
        {"route": "mutex", "bias": 0.5, "min_size": 5},
        {"route": "agglomeration", "threshold": 0.5, "min_size": 5},
        {"route": "mask", "h": 4.0, "min_size": 5},
    ],
    ids=lambda p: p["route"],
)
def test_affinity_routes_blockwise_equal_whole_volume_at_two_block_sizes(
    affinities: tuple[AffinitiesTask, Path], params: dict, tmp_path: Path
) -> None:
    task, path = affinities
    source = Source.open(path, "prediction")
    whole = task.post_process(source.read(source.array(), source.roi), params)
    assert whole.max() >= 4
    for block in ((12, 12, 12), (24, 24, 24)):
        name = f"labels_{block[0]}"
        result = post_process_blockwise(
            task,
            params,
            path,
            "prediction",
            tmp_path / "out.zarr",
            name,
            block_shape=block,
            execution=QUIET,
        )
        labels = zarr.open_group(str(tmp_path / "out.zarr"))[f"{result.dataset}/s0"][:]
        labels = labels.reshape(whole.shape)
        if params["route"] != "agglomeration":
            assert same_partition(labels, whole)
            assert result.objects == whole.max()
            continue
        # Agglomeration merges fragments on the whole volume's region graph, but the
        # fragments are made per block (no context): a face cuts a cell's fragments
        # differently than a whole-volume pass does. The objects stay the truth's.
        gt = objects().astype(np.int64)
        error = adapted_rand_error(gt, labels.astype(np.int64))[0]
        assert error <= adapted_rand_error(gt, whole.astype(np.int64))[0] + 0.02
        assert adapted_rand_error(whole.astype(np.int64), labels.astype(np.int64))[0] < 0.1
        assert result.objects == len(np.unique(gt)) - 1
