"""Instance scores: scikit-image's VOI and adapted Rand, detection counted by hand, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.metrics import adapted_rand_error, variation_of_information

from dacapo_hydra.data.tools.synthetic import generate_volume
from dacapo_hydra.evaluation.instance import (
    AP_THRESHOLDS,
    INSTANCE_SCORE_DIRECTIONS,
    instance_scores,
)

SKIMAGE_KEYS = (
    "voi_split",
    "voi_merge",
    "voi",
    "voi_split_foreground",
    "voi_merge_foreground",
    "voi_foreground",
    "adapted_rand_error",
    "adapted_rand_precision",
    "adapted_rand_recall",
)


def _skimage(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """scikit-image's scores on the (already masked) arrays, NaN where it has none."""
    split, merge = variation_of_information(gt, pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        split_fg, merge_fg = variation_of_information(gt, pred, ignore_labels=[0])
        error, precision, recall = adapted_rand_error(gt, pred)
    return {
        "voi_split": split,
        "voi_merge": merge,
        "voi": split + merge,
        "voi_split_foreground": split_fg,
        "voi_merge_foreground": merge_fg,
        "voi_foreground": split_fg + merge_fg,
        "adapted_rand_error": error,
        "adapted_rand_precision": precision,
        "adapted_rand_recall": recall,
    }


def _assert_equal_to_skimage(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
) -> dict[str, float]:
    s = instance_scores(pred, gt, mask)
    keep = np.ones(gt.shape, bool) if mask is None else mask.astype(bool)
    expected = _skimage(gt[keep], pred[keep])
    for key in SKIMAGE_KEYS:
        if np.isfinite(expected[key]):
            assert s[key] == pytest.approx(expected[key], abs=1e-6), key
    return s


def _structured(seed: int) -> tuple[np.ndarray, np.ndarray]:
    gt = generate_volume((40, 44), seed, cell_diameter=10)["labels"].astype(np.int64)
    pred = gt.copy()
    pred[pred == 3] = 4  # a merge
    pred[:, :10][pred[:, :10] == 7] = 99  # a split
    pred = np.roll(pred, 1, axis=0)  # boundaries off by one voxel
    pred[0, 0] = 123  # a one-voxel fragment
    return gt, pred


def _random(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 6, (13, 17, 11)), rng.integers(0, 9, (13, 17, 11))


def _hand() -> tuple[np.ndarray, np.ndarray]:
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [3, 3, 0, 0]])
    pred = np.array([[5, 0, 1, 1], [0, 1, 2, 2], [3, 3, 3, 0]])
    return gt, pred


CASES = {"hand": _hand, "random": lambda: _random(0), "structured": lambda: _structured(1)}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_voi_and_rand_equal_skimage(name: str, masked: bool) -> None:
    gt, pred = CASES[name]()
    mask = None
    if masked:
        mask = np.ones(gt.shape, np.uint8)
        mask[: gt.shape[0] // 3] = 0
    _assert_equal_to_skimage(pred, gt, mask)


def test_hand_voi_in_bits() -> None:
    # One true object split in two halves: H(pred | gt) = 1/2 bit, nothing merged.
    gt = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    s = instance_scores(np.array([1, 1, 3, 3, 2, 2, 2, 2]), gt)
    assert s["voi_split"] == pytest.approx(0.5) and s["voi_merge"] == 0.0
    # Both merged: H(gt | pred) = 1 bit.
    s = instance_scores(np.ones(8, np.int64), gt)
    assert s["voi_split"] == 0.0 and s["voi_merge"] == pytest.approx(1.0)
    assert s["adapted_rand_recall"] < 1.0 == s["adapted_rand_precision"]


label_images = st.integers(1, 3).flatmap(
    lambda ndim: st.tuples(
        *[
            arrays(np.int64, st.just(shape), elements=st.integers(0, n))
            for shape, n in [((4,) * ndim, 4), ((4,) * ndim, 6)]
        ],
        arrays(bool, st.just((4,) * ndim)),
    )
)


@settings(max_examples=60, deadline=None, database=None)
@given(label_images)
def test_random_label_images_equal_skimage(images: tuple[np.ndarray, ...]) -> None:
    gt, pred, mask = images
    _assert_equal_to_skimage(pred, gt, None)
    if mask.any():
        _assert_equal_to_skimage(pred, gt, mask)


@settings(max_examples=40, deadline=None, database=None)
@given(label_images, st.integers(0, 2**32))
def test_label_ids_do_not_matter(images: tuple[np.ndarray, ...], seed: int) -> None:
    gt, pred, mask = images
    rng = np.random.default_rng(seed)

    def relabel(x: np.ndarray) -> np.ndarray:
        ids = np.unique(x)
        new = rng.choice(2**40, ids.size, replace=False).astype(np.uint64) + 1
        return np.where(x == 0, 0, new[np.searchsorted(ids, x)]).astype(np.uint64)

    s = instance_scores(pred, gt, mask, (3.0,) * gt.ndim)
    assert all(math.isfinite(v) for v in s.values())
    relabelled = instance_scores(relabel(pred), relabel(gt), mask, (3.0,) * gt.ndim)
    # Equally good matchings (ties) may pair other objects: their distances may differ.
    tied = {"instance_accuracy", "hausdorff_distance", "hausdorff_distance_95"}
    tied |= {"normalized_hausdorff_distance", "combined_score"}
    for key in set(s) - tied:
        assert relabelled[key] == pytest.approx(s[key], abs=1e-9), key


def test_keys_match_directions() -> None:
    gt, pred = _structured(2)
    assert set(instance_scores(pred, gt)) == set(INSTANCE_SCORE_DIRECTIONS)
    assert AP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_identical_segmentations_score_perfectly() -> None:
    gt = generate_volume((30, 30), 2, cell_diameter=8)["labels"]
    relabelled = np.where(gt > 0, gt + 500, 0)
    s = instance_scores(relabelled, gt, voxel_size=(4.0, 4.0))
    for key, higher in INSTANCE_SCORE_DIRECTIONS.items():
        assert s[key] == pytest.approx(1.0 if higher else 0.0, abs=1e-9), key


def _discs() -> np.ndarray:
    gt = np.zeros((30, 30), np.int64)
    yy, xx = np.mgrid[:30, :30]
    for k, (y, x) in enumerate([(7, 7), (7, 22), (22, 14)], start=1):
        gt[(yy - y) ** 2 + (xx - x) ** 2 <= 25] = k
    return gt


def test_background_fragment_is_seen() -> None:
    gt = _discs()
    pred = np.where(gt > 0, gt + 10, 0)
    fragment = pred.copy()
    fragment[27, 27:30] = 99  # 3 voxels where the ground truth is background
    clean, dirty = instance_scores(pred, gt), instance_scores(fragment, gt)
    assert dirty["voi_split"] > clean["voi_split"] == 0.0
    assert dirty["voi"] > clean["voi"]
    for key in ("detection_precision", "detection_f1", "mean_average_precision"):
        assert dirty[key] < clean[key] == 1.0, key
    assert dirty["false_positives"] == 1 and dirty["object_count_ratio_error"] == pytest.approx(
        1 / 3
    )
    assert dirty["combined_score"] < clean["combined_score"]
    # The foreground-only scores cannot see it.
    for key in ("voi_foreground", "voi_split_foreground", "adapted_rand_error"):
        assert dirty[key] == clean[key], key


def test_detection_counted_by_hand() -> None:
    gt = np.zeros((12, 12), np.int64)
    gt[0:4, 0:10] = 1  # A, 40 voxels
    gt[6:10, 0:6] = 2  # B, 24 voxels
    gt[6:10, 6:10] = 3  # C, 16 voxels
    pred = np.zeros_like(gt)
    pred[0:4, 0:7] = 11  # A split: IoU 28/40 = 0.7 ...
    pred[0:4, 7:10] = 12  # ... and 12/40 = 0.3
    pred[6:10, 0:10] = 20  # B and C merged: IoU 24/40 = 0.6 with B, 16/40 = 0.4 with C
    pred[11, 11] = 30  # spurious, on background
    s = instance_scores(pred, gt)
    # At IoU >= 0.5: TP = 2 (A-11, B-20), FP = 2 (12, 30), FN = 1 (C).
    assert s["false_positives"] == 2 and s["false_negatives"] == 1
    assert s["detection_precision"] == pytest.approx(2 / 4)
    assert s["detection_recall"] == pytest.approx(2 / 3)
    assert s["detection_f1"] == pytest.approx(4 / 7)
    assert s["mean_matched_iou"] == pytest.approx(0.65)
    assert s["average_precision_50"] == pytest.approx(2 / 5)
    # TP = 2 up to 0.6 (IoU 0.6 >= 0.6), 1 at 0.65 and 0.7, 0 above: AP = TP / (7 - TP).
    assert s["mean_average_precision"] == pytest.approx((3 * 2 / 5 + 2 * 1 / 6) / 10)
    assert s["object_count_ratio_error"] == pytest.approx(1 / 3)
    # The challenge's matching (largest IoU sum, any overlap) makes the same pairs.
    assert s["instance_f1"] == pytest.approx(4 / 7)
    # Stricter threshold: only A-11 is left.
    strict = instance_scores(pred, gt, iou_threshold=0.65)
    assert strict["detection_precision"] == pytest.approx(1 / 4)
    assert strict["average_precision_50"] == s["average_precision_50"]


def test_exact_half_matches_one_of_two() -> None:
    # A prediction covering two equal true objects has IoU exactly 0.5 with each:
    # it matches one at t = 0.5 (IoU >= t), as in StarDist, and neither above.
    gt = np.array([[1, 1, 2, 2]])
    s = instance_scores(np.ones_like(gt), gt)
    assert s["false_positives"] == 0 and s["false_negatives"] == 1
    assert s["average_precision_50"] == pytest.approx(1 / 2)
    assert s["mean_average_precision"] == pytest.approx(1 / 2 / 10)


def test_hungarian_matching_beats_greedy_below_half() -> None:
    # IoU(A, P) = 7/15 is the best pair, but taking it leaves B and Q unmatched;
    # A-Q (0.3) and B-P (5/17) match both objects.
    gt = np.zeros(20, np.int64)
    gt[0:10], gt[10:20] = 1, 2
    pred = np.zeros(20, np.int64)
    pred[3:15], pred[0:3] = 7, 8
    s = instance_scores(pred, gt, iou_threshold=0.25)
    assert s["detection_recall"] == 1.0 and s["detection_precision"] == 1.0
    assert s["instance_f1"] == 1.0  # the challenge's largest IoU sum: 0.594 > 0.467


def test_unmatched_objects_get_the_distance_cap() -> None:
    gt = np.zeros((20, 10), np.int64)
    gt[2:5, 2:5] = 1
    s = instance_scores(np.zeros_like(gt), gt, voxel_size=(8.0, 2.0))
    cap = min(20 * 8.0, 10 * 2.0) / 2  # half the shortest side, in nm
    assert s["hausdorff_distance"] == cap
    assert s["normalized_hausdorff_distance"] == pytest.approx(1.01 ** (-cap / math.hypot(8, 2)))
    assert s["instance_f1"] == 0.0 and s["combined_score"] == 0.0
    assert s["detection_precision"] == 0.0 and s["detection_recall"] == 0.0


def test_box_shifted_along_z_is_40_nm_away() -> None:
    gt = np.zeros((12, 32, 32), np.int64)
    gt[2:7, 4:12, 4:12] = 1
    pred = np.zeros_like(gt)
    pred[3:8, 4:12, 4:12] = 5
    s = instance_scores(pred, gt, voxel_size=(40.0, 4.0, 4.0))
    assert s["hausdorff_distance"] == pytest.approx(40.0)
    # One slab in five is 40 nm from the other box: above the 95th percentile's 5%.
    assert s["hausdorff_distance_95"] == pytest.approx(40.0)
    normalized = 1.01 ** (-40 / math.sqrt(40**2 + 2 * 4**2))
    assert s["normalized_hausdorff_distance"] == pytest.approx(normalized)
    assert s["combined_score"] == pytest.approx(math.sqrt(normalized))
    assert s["mean_matched_iou"] == pytest.approx(4 / 6)
    # A deep box: 1 slab in 25 lies 40 nm away, below the 95th percentile.
    deep_gt = np.zeros((30, 24, 24), np.int64)
    deep_gt[2:27, 2:6, 2:6] = 1
    deep = instance_scores(np.roll(deep_gt, 1, axis=0), deep_gt, voxel_size=(40.0, 4.0, 4.0))
    assert deep["hausdorff_distance"] == pytest.approx(40.0)
    assert deep["hausdorff_distance_95"] == 0.0


def test_many_one_voxel_fragments_are_counted() -> None:
    gt = np.zeros((20, 100, 100), np.uint64)
    gt[2:18, 10:40, 10:40] = 1
    gt[2:18, 60:90, 60:90] = 2
    pred = gt.copy()
    background = np.flatnonzero(gt.ravel() == 0)
    spots = np.random.default_rng(0).choice(background, 5000, replace=False)
    pred.ravel()[spots] = np.arange(5000, dtype=np.uint64) + 2**50
    s = instance_scores(pred, gt, voxel_size=(40.0, 4.0, 4.0))
    assert s["false_positives"] == 5000 and s["false_negatives"] == 0
    assert s["object_count_ratio_error"] == pytest.approx(2500.0)
    assert s["detection_recall"] == 1.0
    assert s["detection_precision"] == pytest.approx(2 / 5002)
    assert s["voi_split"] > 0 and s["voi_foreground"] == 0.0


def test_mask_restricts_objects() -> None:
    gt = np.zeros((10, 10), np.int64)
    gt[1:4, 1:4] = 1
    pred = gt.copy()
    pred[6:9, 6:9] = 2  # a false positive, but outside the annotated region
    pred[1:4, 3] = 0  # the true object's part outside the mask is missed
    mask = np.zeros_like(gt)
    mask[:5, :3] = 1
    s = instance_scores(pred, gt, mask)
    assert s["false_positives"] == 0 and s["detection_f1"] == 1.0 and s["voi"] == 0.0
    assert instance_scores(pred, gt)["false_positives"] == 1


@pytest.mark.parametrize("mask_value", [0, 1])
def test_empty_segmentations_score_perfectly(mask_value: int) -> None:
    empty = np.zeros((6, 7), np.int64)
    s = instance_scores(empty, empty, np.full(empty.shape, mask_value))
    for key, higher in INSTANCE_SCORE_DIRECTIONS.items():
        assert s[key] == (1.0 if higher else 0.0), key


def test_one_side_empty_scores_zero_and_never_nan() -> None:
    gt = np.zeros((6, 7), np.int64)
    pred = gt.copy()
    pred[1:3, 1:3] = 4
    only_pred = instance_scores(pred, gt)
    assert only_pred["detection_precision"] == 0.0 and only_pred["detection_f1"] == 0.0
    assert only_pred["mean_average_precision"] == 0.0 and only_pred["false_positives"] == 1
    assert only_pred["object_count_ratio_error"] == 1.0
    assert only_pred["voi_split"] > 0 and only_pred["voi_foreground"] == 0.0
    only_gt = instance_scores(gt, pred)
    assert only_gt["detection_recall"] == 0.0 and only_gt["false_negatives"] == 1
    # To scikit-image's adapted Rand, predicted background is one more label: a true
    # object missed whole is one object, not an error.
    assert only_gt["adapted_rand_error"] == 0.0 and only_gt["voi_merge"] > 0
    for s in (only_pred, only_gt):
        assert all(math.isfinite(v) for v in s.values())


def test_bad_inputs_are_named() -> None:
    gt = np.ones((3, 3), np.int64)
    with pytest.raises(ValueError, match="shape"):
        instance_scores(gt[:2], gt)
    with pytest.raises(ValueError, match="mask shape"):
        instance_scores(gt, gt, np.ones((2, 2)))
    with pytest.raises(ValueError, match="voxel_size"):
        instance_scores(gt, gt, voxel_size=(4.0,))
    with pytest.raises(ValueError, match="non-negative"):
        instance_scores(-gt, gt)
    with pytest.raises(ValueError, match="integers"):
        instance_scores(gt * 0.5, gt)
    with pytest.raises(ValueError, match="iou_threshold"):
        instance_scores(gt, gt, iou_threshold=0.0)
    # Integral floats (labels read from float arrays) are accepted.
    assert instance_scores(gt.astype(np.float32), gt)["voi"] == 0.0


def _stardist_tp(gt: np.ndarray, pred: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """TP, n_gt, n_pred as StarDist's `matching` computes them (dense IoU, its costs)."""
    from scipy.optimize import linear_sum_assignment

    _, g = np.unique(gt, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    g = g.ravel() + (0 if (gt == 0).any() else 1)
    p = p.ravel() + (0 if (pred == 0).any() else 1)
    overlap = np.zeros((g.max() + 1, p.max() + 1))
    np.add.at(overlap, (g, p), 1)
    union = overlap.sum(0, keepdims=True) + overlap.sum(1, keepdims=True) - overlap
    iou = (overlap / np.maximum(union, 1))[1:, 1:]
    n_true, n_pred = iou.shape
    n_matched = min(n_true, n_pred)
    if n_matched == 0 or not np.any(iou >= threshold):
        return 0, n_true, n_pred
    costs = -(iou >= threshold).astype(float) - iou / (2 * n_matched)
    rows, cols = linear_sum_assignment(costs)
    return int(np.count_nonzero(iou[rows, cols] >= threshold)), n_true, n_pred


@settings(max_examples=60, deadline=None, database=None)
@given(label_images)
def test_average_precision_equals_stardist(images: tuple[np.ndarray, ...]) -> None:
    gt, pred, _ = images
    s = instance_scores(pred, gt)
    precisions = []
    for t in AP_THRESHOLDS:
        tp, n_true, n_pred = _stardist_tp(gt, pred, t)
        both_empty = n_true == 0 and n_pred == 0
        precisions.append(1.0 if both_empty else tp / (n_true + n_pred - tp))
        if t == 0.5:
            assert s["false_positives"] == n_pred - tp and s["false_negatives"] == n_true - tp
    assert s["average_precision_50"] == pytest.approx(precisions[0])
    assert s["mean_average_precision"] == pytest.approx(np.mean(precisions))
