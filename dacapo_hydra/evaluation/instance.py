"""Instance segmentation scores that see every error: splits, merges and background fragments.

`instance_scores(pred, gt, mask, voxel_size)` compares two label images (0 =
background) over the annotated voxels (`mask`); an object is the part of a label
inside the mask, and counts only if it has a voxel there. Every score comes from one
sparse overlap table (`matching.overlaps`); no score is NaN.

Which voxels each score counts:

- `voi_split`, `voi_merge`, `voi`: every voxel in the mask, background a label like any
  other (scikit-image's `variation_of_information(gt, pred)` with its default, nothing
  ignored). A predicted fragment where the ground truth is background splits the
  background and raises `voi_split`; predicted background inside a true object merges
  it with the background and raises `voi_merge`. In bits (log base 2).
- `voi_split_foreground`, `voi_merge_foreground`, `voi_foreground`: only voxels where
  the ground truth is an object (`variation_of_information(gt, pred,
  ignore_labels=[0])`), blind to anything predicted on true background.
- `adapted_rand_error`, `adapted_rand_precision`, `adapted_rand_recall`: only voxels
  where the ground truth is an object (scikit-image's `adapted_rand_error(gt, pred)`,
  default `ignore_labels=(0,)`; predicted background counts as one more predicted
  label there). As in scikit-image, the precision falls with false splits and the
  recall with false merges; fragments on true background are not seen, nor is a true
  object predicted wholly as background (one predicted label covering one object).
- Detection (`detection_*`, `mean_matched_iou`, `false_positives`, `false_negatives`,
  `average_precision_50`, `mean_average_precision`, `object_count_ratio_error`):
  objects, each counting once whatever its size, so a 3-voxel fragment is a false
  positive like any other.
- CellMap challenge scores (`instance_f1`, `instance_accuracy`, `hausdorff_distance*`,
  `normalized_hausdorff_distance`, `combined_score`): objects, and distances in nm.

Matching conventions:

- Detection: StarDist's `stardist.matching.matching` (the convention of the 2018 Data
  Science Bowl, StarDist and Cellpose): a ground-truth and a predicted object can match
  at threshold t when their IoU >= t; the one-to-one matching maximises the number of
  matches, ties broken by the sum of IoUs (an exact linear assignment on the sparse
  graph of overlapping pairs). Above t = 0.5 an object overlaps at most one other that
  much, so the matching is unique; at exactly 0.5 (an object split into two halves)
  the assignment picks one. AP_t = TP / (TP + FP + FN) (StarDist's "accuracy", the
  Data Science Bowl's "average precision",
  https://www.kaggle.com/c/data-science-bowl-2018#evaluation); `mean_average_precision`
  averages it over t = 0.5, 0.55, ..., 0.95. StarDist scores two empty images 0;
  here they score 1.
- CellMap segmentation challenge (janelia-cellmap/cellmap-segmentation-challenge,
  `src/cellmap_segmentation_challenge/utils/eval_utils/`: `scoring.score_instance`,
  `instance_matching.match_instances`, `distance.py`, `aggregation.combine_scores`):
  every overlapping pair can match and the matching maximises the sum of IoUs (the
  challenge's min-cost flow). TP, FP, FN give `instance_f1` = 2 TP / (2 TP + FP + FN).
  Each ground-truth object gets the Hausdorff distance to its match (nm, capped at half
  the volume's shortest side) or the cap if unmatched, and each unmatched predicted
  object the cap; `hausdorff_distance` is the mean of that pool,
  `normalized_hausdorff_distance` the mean of `1.01 ** (-d / ||voxel_size||)` over it,
  and `combined_score` = sqrt(instance_f1 * normalized_hausdorff_distance), all for
  one volume (the challenge then pools counts and distances over a class's crops).
  `hausdorff_distance_95` pools the challenge's "percentile" variant the same way: per
  pair, the larger of the two directed distances' 95th percentiles, over all voxels.
  The challenge scored `mean_accuracy` in place of F1 until April 2026 (commit
  8d21deb); it is kept as `instance_accuracy`: the fraction of voxels where both are
  background or the predicted object is the match of the true one. Unlike the
  challenge, predicted objects are not split into connected components first (its own
  TODO is to drop that step): every score here sees the same objects.

Ratios with nothing to count (0 / 0) are 1 when neither segmentation has an object and
0 otherwise (for detection); the adapted Rand ratios, which scikit-image leaves NaN
when no two voxels share a label, are 1 (no pair of voxels to get wrong).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dacapo_hydra.evaluation.hausdorff import matched_hausdorff, max_distance, normalize_distance
from dacapo_hydra.evaluation.matching import (
    Matching,
    Overlaps,
    match_max_iou,
    match_objects,
    overlaps,
)

# True: higher is better, for every score `instance_scores` returns.
INSTANCE_SCORE_DIRECTIONS: dict[str, bool] = {
    "voi": False,
    "voi_split": False,
    "voi_merge": False,
    "voi_foreground": False,
    "voi_split_foreground": False,
    "voi_merge_foreground": False,
    "adapted_rand_error": False,
    "adapted_rand_precision": True,
    "adapted_rand_recall": True,
    "detection_precision": True,
    "detection_recall": True,
    "detection_f1": True,
    "mean_matched_iou": True,
    "false_positives": False,
    "false_negatives": False,
    "average_precision_50": True,
    "mean_average_precision": True,
    "object_count_ratio_error": False,
    "instance_f1": True,
    "instance_accuracy": True,
    "hausdorff_distance": False,
    "hausdorff_distance_95": False,
    "normalized_hausdorff_distance": True,
    "combined_score": True,
}

# IoU thresholds of `mean_average_precision`: 0.5, 0.55, ..., 0.95.
AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _variation_of_information(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray
) -> tuple[float, float]:
    """(H(pred | gt), H(gt | pred)) in bits of a sparse contingency table.

    scikit-image's `variation_of_information(gt, pred)` returns the same pair
    (conditional entropies of image1 | image0 and image0 | image1): the first grows
    when a true object is split among predicted labels, the second when a predicted
    label covers several true ones.
    """
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts / total
    gt_sizes = np.bincount(rows, weights=counts)
    pred_sizes = np.bincount(cols, weights=counts)
    split = -np.sum(p * np.log2(counts / gt_sizes[rows]))
    merge = -np.sum(p * np.log2(counts / pred_sizes[cols]))
    return max(float(split), 0.0), max(float(merge), 0.0)


def _adapted_rand(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray
) -> tuple[float, float, float]:
    """(error, precision, recall) as scikit-image's `adapted_rand_error(table=...)`.

    Pairs of voxels: `together` share a label in both images, `gt_pairs` in the ground
    truth, `pred_pairs` in the prediction. A ratio with no pairs below it is 1 where
    scikit-image gives NaN.
    """
    c = counts.astype(np.float64)
    a = np.bincount(rows, weights=c)
    b = np.bincount(cols, weights=c)
    together = c @ c - c.sum()
    gt_pairs = a @ a - a.sum()
    pred_pairs = b @ b - b.sum()
    precision = together / gt_pairs if gt_pairs else 1.0
    recall = together / pred_pairs if pred_pairs else 1.0
    both = 0.5 * gt_pairs + 0.5 * pred_pairs
    return 1.0 - (together / both if both else 1.0), float(precision), float(recall)


def _ratio(numerator: float, denominator: float, empty: bool) -> float:
    """The ratio, or (0 / 0) 1 where both segmentations are empty and 0 otherwise."""
    return float(numerator / denominator) if denominator else float(empty)


def _detection(table: Overlaps, iou_threshold: float) -> dict[str, float]:
    """Detection scores from StarDist-convention matchings."""
    n_gt, n_pred = table.n_gt, table.n_pred
    empty = n_gt == 0 and n_pred == 0
    match = match_objects(table, iou_threshold)
    tp = match.size
    fp, fn = n_pred - tp, n_gt - tp
    precisions = []
    for t in AP_THRESHOLDS:
        hits = match.size if t == iou_threshold else match_objects(table, t).size
        precisions.append(_ratio(hits, n_pred + n_gt - hits, empty))
    at_half = match if iou_threshold == 0.5 else match_objects(table, 0.5)
    return {
        "detection_precision": _ratio(tp, n_pred, empty),
        "detection_recall": _ratio(tp, n_gt, empty),
        "detection_f1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "mean_matched_iou": float(match.iou.mean()) if tp else float(empty),
        "false_positives": float(fp),
        "false_negatives": float(fn),
        "average_precision_50": _ratio(at_half.size, n_pred + n_gt - at_half.size, empty),
        "mean_average_precision": float(np.mean(precisions)),
        "object_count_ratio_error": abs(n_pred - n_gt) / max(n_gt, 1),
    }


def _challenge(table: Overlaps, voxel_size: Sequence[float]) -> dict[str, float]:
    """The CellMap challenge's instance scores (see the module docstring)."""
    n_gt, n_pred = table.n_gt, table.n_pred
    match: Matching = match_max_iou(table)
    tp = match.size
    fp, fn = n_pred - tp, n_gt - tp
    background = table.counts[(table.rows == 0) & (table.cols == 0)].sum()
    n_voxels = table.n_voxels
    accuracy = (background + match.counts.sum()) / n_voxels if n_voxels else 1.0
    if n_gt == 0 and n_pred == 0:
        return {
            "instance_f1": 1.0,
            "instance_accuracy": float(accuracy),
            "hausdorff_distance": 0.0,
            "hausdorff_distance_95": 0.0,
            "normalized_hausdorff_distance": 1.0,
            "combined_score": 1.0,
        }
    cap = max_distance(voxel_size, table.gt_labels.shape)
    hd, hd_95 = matched_hausdorff(
        table.gt_labels, table.pred_labels, match.gt, match.pred, voxel_size
    )
    unmatched = np.full(fn + fp, cap)
    pool = np.concatenate([np.minimum(hd, cap), unmatched])
    pool_95 = np.concatenate([np.minimum(hd_95, cap), unmatched])
    normalized = float(normalize_distance(pool, voxel_size).mean())
    f1 = 2 * tp / (2 * tp + fp + fn)
    return {
        "instance_f1": float(f1),
        "instance_accuracy": float(accuracy),
        "hausdorff_distance": float(pool.mean()),
        "hausdorff_distance_95": float(pool_95.mean()),
        "normalized_hausdorff_distance": normalized,
        "combined_score": float(np.sqrt(f1 * normalized)),
    }


def _voxel_scores(table: Overlaps) -> dict[str, float]:
    """Variation of information (all voxels, and true-object voxels) and adapted Rand."""
    split, merge = _variation_of_information(table.rows, table.cols, table.counts)
    foreground = table.rows > 0
    fg = table.rows[foreground], table.cols[foreground], table.counts[foreground]
    split_fg, merge_fg = _variation_of_information(*fg)
    rand_error, rand_precision, rand_recall = _adapted_rand(*fg)
    return {
        "voi": split + merge,
        "voi_split": split,
        "voi_merge": merge,
        "voi_foreground": split_fg + merge_fg,
        "voi_split_foreground": split_fg,
        "voi_merge_foreground": merge_fg,
        "adapted_rand_error": float(rand_error),
        "adapted_rand_precision": rand_precision,
        "adapted_rand_recall": rand_recall,
    }


def instance_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    voxel_size: Sequence[float] | None = None,
    *,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Every score of `INSTANCE_SCORE_DIRECTIONS` for one instance segmentation.

    See the module docstring for the voxels each score counts and the matchings.

    Args:
        pred: predicted instance labels, (*spatial) non-negative integers, 0 = background.
        gt: true instance labels, same shape, 0 = background.
        mask: nonzero where the ground truth is annotated, or None for everywhere. Only
            these voxels are scored, by every score; objects are their parts inside it.
        voxel_size: nm per voxel along each axis (Hausdorff distances), or None for 1.
        iou_threshold: smallest IoU of a match for `detection_precision`,
            `detection_recall`, `detection_f1`, `mean_matched_iou`, `false_positives`
            and `false_negatives` (IoU >= threshold). `average_precision_50` and
            `mean_average_precision` use their own thresholds.

    Returns:
        Score name to value, never NaN:

        - `voi_split` = H(pred | gt), `voi_merge` = H(gt | pred), `voi` their sum
          (bits, all voxels in the mask; lower is better);
        - the same with the `_foreground` suffix over true-object voxels only;
        - `adapted_rand_error`, `adapted_rand_precision`, `adapted_rand_recall` over
          true-object voxels only;
        - `detection_precision` TP / n_pred, `detection_recall` TP / n_gt,
          `detection_f1`, `mean_matched_iou` (mean IoU of the matches),
          `false_positives`, `false_negatives` (counts) at `iou_threshold`;
        - `average_precision_50` TP / (TP + FP + FN) at IoU 0.5,
          `mean_average_precision` its mean over IoU 0.5, 0.55, ..., 0.95;
        - `object_count_ratio_error` |n_pred - n_gt| / max(n_gt, 1);
        - `instance_f1`, `instance_accuracy`, `hausdorff_distance`,
          `hausdorff_distance_95` (nm), `normalized_hausdorff_distance` and
          `combined_score`, the CellMap challenge's.

    """
    ndim = np.ndim(gt)
    voxel_size = (1.0,) * ndim if voxel_size is None else tuple(float(v) for v in voxel_size)
    if len(voxel_size) != ndim or min(voxel_size, default=1.0) <= 0:
        raise ValueError(
            f"evaluation: voxel_size needs {ndim} positive values, got {list(voxel_size)}"
        )
    table = overlaps(gt, pred, mask)
    scores = _voxel_scores(table)
    scores.update(_detection(table, iou_threshold))
    scores.update(_challenge(table, voxel_size))
    return scores
