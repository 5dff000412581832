"""Distance targets at known voxels; thresholds work on float predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacapo_hydra.tasks.distance import DistanceTask


def _slab() -> tuple[np.ndarray, np.ndarray]:
    # 2D, voxel 10 nm: foreground columns x in [10, 20) of 40.
    gt = np.zeros((30, 40), np.uint64)
    gt[:, 10:20] = 7
    return gt, np.ones(gt.shape, np.uint8)


def test_signed_distances_at_known_voxels() -> None:
    task = DistanceTask(2, (10.0, 10.0), scale_factor=50.0, clip_distance=100.0)
    gt, _ = _slab()
    d = task.distances(gt)[0]
    # Half a voxel either side of a boundary, then a voxel per step.
    assert d[15, 10] == pytest.approx(5.0)
    assert d[15, 9] == pytest.approx(-5.0)
    assert d[15, 14] == pytest.approx(45.0)
    assert d[15, 5] == pytest.approx(-45.0)
    assert d[15, 39] == pytest.approx(-100.0)  # 195 nm, clipped
    target, _ = task.targets(gt, np.ones(gt.shape))
    assert target[0, 15, 14] == pytest.approx(np.tanh(45.0 / 50.0))


def test_unknowable_distances_weigh_zero() -> None:
    task = DistanceTask(2, (10.0, 10.0), tol_distance=0.0)
    gt, mask = _slab()
    mask[:, 30:] = 0
    _, weight = task.targets(gt, mask)
    assert not weight[0, :, 30:].any()  # unannotated
    # x = 25 is -55 nm from the object but 50 nm from the unannotated region: unknown.
    assert weight[0, 15, 25] == 0
    # x = 14 is 45 nm inside, 155 nm from the unknown side and the crop edge is 150 away.
    assert weight[0, 15, 14] > 0
    # Near the crop's edge along y a boundary could hide just outside.
    assert weight[0, 0, 14] == 0


def test_loss_is_weighted() -> None:
    task = DistanceTask(2, (10.0, 10.0))
    target = torch.zeros(1, 1, 4, 4)
    weight = torch.zeros(1, 1, 4, 4)
    weight[..., 0, 0] = 2.0
    prediction = torch.ones(1, 1, 4, 4)
    assert task.loss(prediction, target, weight).item() == pytest.approx(2.0 / 16)


def test_threshold_works_on_float_predictions() -> None:
    """DaCapo thresholds float predictions at 127 and scores empty masks; ours must not."""
    task = DistanceTask(2, (10.0, 10.0))
    gt, mask = _slab()
    target, _ = task.targets(gt, mask)
    noisy = target + np.random.default_rng(0).normal(0, 0.02, target.shape).astype(np.float32)
    output = task.post_process(noisy, {"threshold": 0.0})
    assert output.shape == (1, 30, 40) and output.any()
    assert task.evaluate(output, gt, mask)["dice"] == 1.0


def test_multiple_classes_score_per_class() -> None:
    gt = np.zeros((12, 12), np.uint64)
    gt[:4] = 1
    gt[6:] = 2
    task = DistanceTask(2, (4.0, 4.0), channels=["a", "b"])
    target, _ = task.targets(gt, np.ones(gt.shape))
    assert target.shape == (2, 12, 12)
    output = task.post_process(target, {"threshold": 0.0})
    output[1] = 0  # lose class b entirely
    scores = task.evaluate(output, gt, None)
    assert scores["a/dice"] == 1.0 and scores["b/dice"] == 0.0
    assert scores["dice"] == pytest.approx(0.5)
    assert set(scores) == set(task.score_directions())


def test_bad_criterion_is_named() -> None:
    with pytest.raises(ValueError, match="criterion.*'voi'"):
        DistanceTask(2, (4.0, 4.0), criterion="voi")
