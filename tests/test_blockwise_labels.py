"""Blockwise post-processing: per-block labels, instance ids consistent across block faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy.ndimage import label as connected_components

from dacapo_hydra.data.output import open_output
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.fragments import Source
from dacapo_hydra.inference.labels import post_process_blockwise
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.tasks.inner_distance import InnerDistanceTask

VOXEL = (8.0, 8.0, 8.0)
SHAPE = (24, 48, 48)  # blocks of 24^3: a 1 x 2 x 2 grid, four blocks meeting on the axis z
BLOCK = (24, 24, 24)
QUIET = Execution(progress=False)


def objects() -> np.ndarray:
    """Instance labels: a ball spanning all four blocks, two boxes touching across a face,
    a U whose arms meet only through the neighbouring blocks, and a small ball."""
    z, y, x = np.indices(SHAPE)
    gt = np.zeros(SHAPE, np.uint64)
    gt[(z - 12) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 8**2] = 1
    gt[3:11, 14:24, 2:10] = 2
    gt[3:11, 24:34, 2:10] = 3
    gt[14:20, 4:44, 38:41] = 4  # the U: two arms along y, across the y face, ...
    gt[14:20, 4:44, 43:46] = 4
    gt[14:20, 40:44, 38:46] = 4  # ... joined at the far end, inside the upper blocks
    gt[(z - 18) ** 2 + (y - 8) ** 2 + (x - 12) ** 2 <= 3**2] = 5
    return gt


def write_prediction(path: Path, prediction: np.ndarray) -> None:
    roi = Roi((80.0, 160.0, 240.0), tuple(s * v for s, v in zip(SHAPE, VOXEL, strict=True)))
    array = open_output(path, "prediction", roi, VOXEL, prediction.shape[0], "float32", (12,) * 3)
    array[...] = prediction


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labellings have the same background and the same objects (any ids)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a[a != 0], b[b != 0]], axis=1), axis=0)
    return len(pairs) == len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1]))


@pytest.fixture(scope="module")
def inner_distance(tmp_path_factory: pytest.TempPathFactory) -> tuple[InnerDistanceTask, Path]:
    task = InnerDistanceTask(3, VOXEL)
    path = tmp_path_factory.mktemp("labels") / "pred.zarr"
    write_prediction(path, task.scale(task.distances(objects())).astype(np.float32))
    return task, path


def test_watershed_ids_are_consistent_across_block_faces(
    inner_distance: tuple[InnerDistanceTask, Path], tmp_path: Path
) -> None:
    task, pred_path = inner_distance
    params = {"seed_distance": 16.0}
    result = post_process_blockwise(
        task,
        params,
        pred_path,
        "prediction",
        tmp_path / "out.zarr",
        "labels",
        block_shape=BLOCK,
        execution=QUIET,
    )
    assert result.blocks == 4 and result.instances
    labels = zarr.open_group(str(tmp_path / "out.zarr"))["labels/s0"][:]
    assert labels.shape == (1, *SHAPE) and labels.dtype == np.uint64
    gt = objects()
    ball = np.unique(labels[0][gt == 1])
    assert len(ball) == 1 and ball[0] != 0  # one id in all four blocks
    assert labels[0][gt == 2].max() != labels[0][gt == 3].max()  # touching, not merged
    whole = task.post_process(
        Source.open(pred_path, "prediction").read(
            Source.open(pred_path, "prediction").array(),
            Source.open(pred_path, "prediction").roi,
        ),
        params,
    )
    assert same_partition(labels, whole)
    assert result.objects == len(np.unique(whole)) - 1
    assert sorted(np.unique(labels)) == list(range(result.objects + 1))  # consecutive


@pytest.mark.slow
def test_two_dask_workers_label_like_one(
    inner_distance: tuple[InnerDistanceTask, Path], tmp_path: Path
) -> None:
    task, pred_path = inner_distance
    out = tmp_path / "out.zarr"
    for name, workers in (("one", 1), ("two", 2)):
        post_process_blockwise(
            task,
            {"seed_distance": 16.0},
            pred_path,
            "prediction",
            out,
            name,
            block_shape=BLOCK,
            execution=Execution(workers=workers, progress=False),
        )
    group = zarr.open_group(str(out))
    np.testing.assert_array_equal(group["two/s0"][:], group["one/s0"][:])


def test_threshold_per_block_and_connected_components(tmp_path: Path) -> None:
    task = DistanceTask(3, VOXEL)
    gt = objects()
    pred_path = tmp_path / "pred.zarr"
    write_prediction(pred_path, task.scale(task.distances(gt)).astype(np.float32))
    out = tmp_path / "out.zarr"
    params = {"threshold": 0.0}
    mask = post_process_blockwise(
        task, params, pred_path, "prediction", out, "mask", block_shape=BLOCK, execution=QUIET
    )
    assert not mask.instances and mask.objects is None
    binary = zarr.open_group(str(out))["mask/s0"][:]
    np.testing.assert_array_equal(binary[0], gt != 0)
    expected, count = connected_components(gt != 0)
    for name, context in (("touching", (0, 0, 0)), ("seen", None)):
        cc = post_process_blockwise(
            task,
            params,
            pred_path,
            "prediction",
            out,
            name,
            block_shape=BLOCK,
            context=context,
            connected_components=True,
            execution=QUIET,
        )
        labels = zarr.open_group(str(out))[f"{name}/s0"][:]
        assert same_partition(labels[0], expected)  # the U's arms meet in the upper blocks
        assert cc.objects == count


def test_rerun_is_a_no_op_and_a_different_output_is_refused(
    inner_distance: tuple[InnerDistanceTask, Path], tmp_path: Path
) -> None:
    task, pred_path = inner_distance
    out = tmp_path / "out.zarr"
    first = post_process_blockwise(
        task,
        {"seed_distance": 16.0},
        pred_path,
        "prediction",
        out,
        "labels",
        block_shape=BLOCK,
        execution=QUIET,
    )
    before = zarr.open_group(str(out))["labels/s0"][:]
    again = post_process_blockwise(
        task,
        {"seed_distance": 16.0},
        pred_path,
        "prediction",
        out,
        "labels",
        block_shape=BLOCK,
        execution=QUIET,
    )
    assert again.objects == first.objects
    np.testing.assert_array_equal(zarr.open_group(str(out))["labels/s0"][:], before)
    with pytest.raises(ValueError, match="already holds a different array"):
        post_process_blockwise(
            DistanceTask(3, VOXEL),
            {"threshold": 0.0},
            pred_path,
            "prediction",
            out,
            "labels",
            block_shape=BLOCK,
            execution=QUIET,
        )
    with pytest.raises(
        ValueError,
        match=r"/labels: started with seed_distance 16\.0; this run has seed_distance 24\.0; "
        r"use --overwrite",
    ):
        post_process_blockwise(
            task,
            {"seed_distance": 24.0},
            pred_path,
            "prediction",
            out,
            "labels",
            block_shape=BLOCK,
            execution=QUIET,
        )
    with pytest.raises(ValueError, match="seed_distance"):
        post_process_blockwise(
            task,
            {"bias": 0.5},
            pred_path,
            "prediction",
            out,
            "other",
            block_shape=BLOCK,
            execution=QUIET,
        )
    with pytest.raises(ValueError, match="multiples of the prediction's chunks"):
        post_process_blockwise(
            task,
            {"seed_distance": 16.0},
            pred_path,
            "prediction",
            out,
            "other",
            block_shape=(20, 24, 24),
            execution=QUIET,
        )
    assert not (out / "other").exists()
    # overwrite starts afresh with the other parameters, and records them.
    post_process_blockwise(
        task,
        {"seed_distance": 24.0},
        pred_path,
        "prediction",
        out,
        "labels",
        block_shape=BLOCK,
        overwrite=True,
        execution=QUIET,
    )
    attrs = zarr.open_group(str(out))["labels"].attrs.asdict()
    assert attrs["dacapo"]["post_process"] == {"seed_distance": 24.0}
