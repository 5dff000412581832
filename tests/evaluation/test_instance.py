"""Instance scores equal scikit-image's VOI and adapted Rand; matching counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, variation_of_information

from dacapo_hydra.data.synthetic import generate_volume
from dacapo_hydra.evaluation.instance import (
    INSTANCE_SCORE_DIRECTIONS,
    contingency,
    instance_scores,
    match_objects,
)


def _random(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 6, (13, 17, 11)), rng.integers(0, 9, (13, 17, 11))


def _structured(seed: int) -> tuple[np.ndarray, np.ndarray]:
    gt = generate_volume((40, 44), seed, cell_diameter=10)["labels"].astype(np.int64)
    pred = gt.copy()
    pred[pred == 3] = 4  # a merge
    pred[:, :10][pred[:, :10] == 7] = 99  # a split
    pred = np.roll(pred, 1, axis=0)  # boundaries off by one voxel
    # Huge ids, as agglomeration produces.
    return gt * 1_000_003, pred + 2**40


CASES = {
    "random": lambda: _random(0),
    "structured": lambda: _structured(1),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_voi_and_rand_equal_skimage(name: str, masked: bool) -> None:
    gt, pred = CASES[name]()
    mask = None
    if masked:
        mask = np.ones(gt.shape, np.uint8)
        mask[: gt.shape[0] // 3] = 0
    s = instance_scores(pred, gt, mask)
    keep = np.ones(gt.shape, bool) if mask is None else mask.astype(bool)
    # scikit-image indexes by label value: compact the ids for its own table.
    _, g = np.unique(gt[keep], return_inverse=True)
    _, p = np.unique(pred[keep], return_inverse=True)
    g = np.where(gt[keep] == 0, 0, g + (0 if (gt[keep] == 0).any() else 1))
    split, merge = variation_of_information(g, p, ignore_labels=[0])
    are, precision, recall = adapted_rand_error(g, p)
    assert s["voi_split"] == pytest.approx(split, abs=1e-6)
    assert s["voi_merge"] == pytest.approx(merge, abs=1e-6)
    assert s["voi"] == pytest.approx(split + merge, abs=1e-6)
    assert s["adapted_rand_error"] == pytest.approx(are, abs=1e-6)
    assert s["adapted_rand_precision"] == pytest.approx(precision, abs=1e-6)
    assert s["adapted_rand_recall"] == pytest.approx(recall, abs=1e-6)


def test_identical_segmentations_score_perfectly() -> None:
    gt = generate_volume((30, 30), 2, cell_diameter=8)["labels"]
    relabelled = np.where(gt > 0, gt + 500, 0)
    s = instance_scores(relabelled, gt)
    assert s["voi"] == pytest.approx(0.0, abs=1e-9)
    assert s["adapted_rand_error"] == pytest.approx(0.0, abs=1e-9)
    assert s["detection_f1"] == 1.0 and s["mean_matched_iou"] == 1.0
    assert set(s) == set(INSTANCE_SCORE_DIRECTIONS)


def test_detection_matches_by_hand() -> None:
    gt = np.zeros((10, 10), np.int64)
    gt[0:4, 0:4] = 1  # 16 voxels
    gt[0:4, 6:10] = 2  # 16 voxels
    gt[6:10, 0:4] = 3  # 16 voxels
    pred = np.zeros_like(gt)
    pred[0:4, 0:3] = 10  # IoU 12/16 with 1: a match
    pred[0:2, 6:10] = 20  # IoU 8/16 with 2: not above 0.5
    pred[7:9, 7:9] = 30  # on background: a false positive
    table, gt_ids, pred_ids = contingency(gt, pred)
    matched_gt, matched_pred, ious = match_objects(table, gt_ids, pred_ids)
    assert matched_gt.tolist() == [1] and matched_pred.tolist() == [10]
    assert ious.tolist() == [pytest.approx(0.75)]
    s = instance_scores(pred, gt)
    assert s["detection_precision"] == pytest.approx(1 / 3)
    assert s["detection_recall"] == pytest.approx(1 / 3)
    assert s["detection_f1"] == pytest.approx(1 / 3)
    assert s["mean_matched_iou"] == pytest.approx(0.75)


def test_bad_threshold_is_named() -> None:
    gt = np.ones((3, 3), np.int64)
    table, g, p = contingency(gt, gt)
    with pytest.raises(ValueError, match="iou_threshold"):
        match_objects(table, g, p, iou_threshold=0.3)
