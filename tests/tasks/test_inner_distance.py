"""Inner distances at known voxels; touching objects seeded apart."""

from __future__ import annotations

import numpy as np
import pytest

from dacapo_hydra.tasks.inner_distance import InnerDistanceTask


def _touching() -> np.ndarray:
    gt = np.zeros((20, 30), np.uint64)
    gt[2:18, 2:14] = 4
    gt[2:18, 14:28] = 9  # shares the face x = 13 | 14 with label 4
    return gt


def test_inner_distances_at_known_voxels() -> None:
    task = InnerDistanceTask(2, (10.0, 10.0), clip_distance=1000.0)
    d = task.distances(_touching())[0]
    assert d[10, 13] == pytest.approx(5.0)  # against label 9
    assert d[10, 14] == pytest.approx(5.0)  # against label 4
    assert d[10, 10] == pytest.approx(35.0)  # 4 voxels from label 9
    assert d[10, 2] == pytest.approx(5.0)  # against background
    assert d[0, 0] == 0.0
    capped = InnerDistanceTask(2, (10.0, 10.0), clip_distance=20.0).distances(_touching())[0]
    assert capped.max() == pytest.approx(20.0)


def test_crop_edge_is_not_a_boundary() -> None:
    task = InnerDistanceTask(2, (10.0, 10.0), clip_distance=1000.0, tol_distance=0.0)
    gt = np.full((10, 10), 3, np.uint64)
    gt[:, 8:] = 0
    d = task.distances(gt)[0]
    assert d[0, 3] == pytest.approx(45.0)  # only the background at x = 8 counts
    _, weight = task.targets(gt, np.ones(gt.shape))
    assert weight[0, 0, 3] == 0  # the crop edge at 10 nm could hide a boundary
    assert weight[0, 5, 7] > 0


def test_touching_objects_recovered() -> None:
    task = InnerDistanceTask(2, (10.0, 10.0))
    gt = _touching()
    target, _ = task.targets(gt, np.ones(gt.shape))
    output = task.post_process(target, {"seed_distance": 10.0})
    assert output.shape == (1, 20, 30)
    scores = task.evaluate(output, gt, None)
    assert scores["voi"] == pytest.approx(0.0, abs=1e-9)
    assert scores["detection_f1"] == 1.0
    # Seeds at half a voxel join the two objects through the shared face.
    merged = task.evaluate(task.post_process(target, {"seed_distance": 1.0}), gt, None)
    assert merged["voi_merge"] > 0.5
