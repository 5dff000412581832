"""Every task option: targets of a ground truth, post-processed as predictions, score perfectly."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest

from dacapo_hydra.api import compose
from dacapo_hydra.tasks.base import Task

TASKS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "task").glob("*.yaml")
)


def _labels(dims: int) -> np.ndarray:
    """Compact objects, two of them touching, the rest apart, on background."""
    shape = (24, 26, 28)[-dims:] if dims == 3 else (40, 44)
    gt = np.zeros(shape, np.uint64)
    grid = np.indices(shape)
    if dims == 3:
        gt[4:14, 3:12, 4:14] = 11
        gt[4:14, 12:22, 4:14] = 12
        gt[(grid[0] - 17) ** 2 + (grid[1] - 8) ** 2 + (grid[2] - 20) ** 2 <= 16] = 13
    else:
        gt[5:20, 4:18] = 11
        gt[5:20, 18:32] = 12
        gt[(grid[0] - 30) ** 2 + (grid[1] - 36) ** 2 <= 25] = 13
    return gt


def _as_prediction(task: Task, target: np.ndarray) -> np.ndarray:
    """What a perfect network's activated output would be."""
    if np.issubdtype(target.dtype, np.integer):
        return np.moveaxis(np.eye(task.num_channels, dtype=np.float32)[target[0]], -1, 0)
    return target


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", TASKS)
def test_round_trip_is_perfect(name: str, dims: int) -> None:
    cfg = compose(datasplit=f"synthetic_{dims}d", task=name)
    if dims == 2 and cfg.task.get("neighborhood") and len(cfg.task.neighborhood[0]) != 2:
        pytest.skip(f"task {name} is 3D only")
    voxel_size = (8.0, 4.0, 4.0)[-dims:]
    task: Task = hydra.utils.instantiate(cfg.task, dims=dims, voxel_size=voxel_size)
    gt = _labels(dims)
    if name == "distance_instances":
        # The distance to the foreground has no saddle between two boxes sharing a whole
        # face, so nothing can split them (inner_distance can): leave a one-voxel gap.
        first = np.indices(gt.shape)[1] == (12 if dims == 3 else 18)
        gt[(gt == 12) & first] = 0
    mask = np.ones(gt.shape, np.uint8)
    target, weight = task.targets(gt, mask)
    assert target.shape == weight.shape == (target.shape[0], *gt.shape)
    assert target.shape[0] in (1, task.num_channels)
    prediction = _as_prediction(task, target)
    assert prediction.shape == (task.num_channels, *gt.shape)

    directions = task.score_directions()
    best = None
    for params in task.parameter_grid():
        scores = task.evaluate(task.post_process(prediction, params), gt, mask)
        assert set(scores) == set(directions)
        value = scores[task.criterion]
        if best is None or (value > best[0] if directions[task.criterion] else value < best[0]):
            best = (value, scores)
    assert best is not None
    scores = best[1]
    if "voi" in scores:
        assert scores["voi"] == pytest.approx(0.0, abs=1e-9)
        assert scores["adapted_rand_error"] == pytest.approx(0.0, abs=1e-9)
        assert scores["detection_f1"] == 1.0 and scores["mean_matched_iou"] == 1.0
    else:
        assert scores["dice"] == 1.0 and scores["jaccard"] == 1.0
        if "hausdorff" in scores:
            assert scores["hausdorff"] == 0.0 and scores["false_positives"] == 0.0
