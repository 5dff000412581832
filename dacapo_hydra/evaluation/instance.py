"""Instance segmentation scores: VOI, adapted Rand error, detection by IoU matching.

VOI and the adapted Rand error are scikit-image's, fed one contingency table built
here: scikit-image's own `contingency_table` indexes a sparse matrix by raw label
values (ids from agglomeration can be huge) and cannot skip unannotated voxels, so
labels are compacted with `np.unique` first and the same table also serves the
object matching, which no library provides on a sparse overlap table.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from skimage.metrics import adapted_rand_error, variation_of_information

# True: higher is better, for every score `instance_scores` returns.
INSTANCE_SCORE_DIRECTIONS: dict[str, bool] = {
    "voi": False,
    "voi_split": False,
    "voi_merge": False,
    "adapted_rand_error": False,
    "adapted_rand_precision": True,
    "adapted_rand_recall": True,
    "detection_precision": True,
    "detection_recall": True,
    "detection_f1": True,
    "mean_matched_iou": True,
}


def contingency(
    gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None
) -> tuple[sparse.csr_array, np.ndarray, np.ndarray]:
    """Overlap counts of ground-truth (rows) and predicted (columns) labels.

    Args:
        gt: true instance labels, (*spatial) integers, 0 = background.
        pred: predicted instance labels, same shape, 0 = background.
        mask: voxels to count (1 = annotated), or None for all.

    Returns:
        The (n_gt_labels, n_pred_labels) table and the label value of each row and
        column (label 0 included where present).

    """
    if gt.shape != pred.shape:
        raise ValueError(f"evaluation: prediction shape {pred.shape} != ground truth {gt.shape}")
    if mask is not None:
        if mask.shape != gt.shape:
            raise ValueError(f"evaluation: mask shape {mask.shape} != ground truth {gt.shape}")
        keep = mask.astype(bool).ravel()
        gt_flat, pred_flat = gt.ravel()[keep], pred.ravel()[keep]
    else:
        gt_flat, pred_flat = gt.ravel(), pred.ravel()
    gt_ids, rows = np.unique(gt_flat, return_inverse=True)
    pred_ids, cols = np.unique(pred_flat, return_inverse=True)
    table = sparse.csr_array(
        (np.ones(rows.size), (rows.ravel(), cols.ravel())), shape=(gt_ids.size, pred_ids.size)
    )
    table.sum_duplicates()
    return table, gt_ids, pred_ids


def match_objects(
    table: sparse.csr_array, gt_ids: np.ndarray, pred_ids: np.ndarray, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of non-background objects whose IoU exceeds `iou_threshold` (>= 0.5).

    Above 0.5 an object can overlap at most one other that much, so the matching is
    unique without an assignment solver.

    Returns:
        Matched ground-truth ids, predicted ids and their IoUs.

    """
    if not 0.5 <= iou_threshold < 1:
        raise ValueError(
            f"evaluation: iou_threshold must be in [0.5, 1) for a unique matching, "
            f"got {iou_threshold}"
        )
    gt_sizes = np.asarray(table.sum(axis=1)).ravel()
    pred_sizes = np.asarray(table.sum(axis=0)).ravel()
    coo = table.tocoo()
    r, c, overlap = coo.row, coo.col, coo.data
    keep = (gt_ids[r] != 0) & (pred_ids[c] != 0)
    r, c, overlap = r[keep], c[keep], overlap[keep]
    iou = overlap / (gt_sizes[r] + pred_sizes[c] - overlap)
    hit = iou > iou_threshold
    return gt_ids[r[hit]], pred_ids[c[hit]], iou[hit]


def instance_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Every score of `INSTANCE_SCORE_DIRECTIONS` for one instance segmentation.

    VOI and adapted Rand ignore voxels where the ground truth is 0 (as CREMI and
    scikit-image do); detection counts predicted objects anywhere in the mask.

    Args:
        pred: predicted instance labels, (*spatial) integers, 0 = background.
        gt: true instance labels, same shape, 0 = background.
        mask: 1 where the ground truth is annotated, or None for everywhere.
        iou_threshold: IoU a predicted object must exceed to match a true one.

    """
    table, gt_ids, pred_ids = contingency(gt, pred, mask)
    foreground = table[gt_ids != 0] if (gt_ids == 0).any() else table
    scores: dict[str, float] = {}
    if foreground.nnz:
        # scikit-image 0.26 checks image shapes even when given a table: pass two empty ones.
        nothing = np.empty(0, np.int64)
        split, merge = variation_of_information(
            nothing, nothing, table=foreground / foreground.sum()
        )
        are, rand_precision, rand_recall = adapted_rand_error(table=foreground)
    else:
        split, merge, are, rand_precision, rand_recall = 0.0, 0.0, 0.0, 1.0, 1.0
    scores["voi_split"] = float(split)
    scores["voi_merge"] = float(merge)
    scores["voi"] = float(split + merge)
    scores["adapted_rand_error"] = float(are)
    scores["adapted_rand_precision"] = float(rand_precision)
    scores["adapted_rand_recall"] = float(rand_recall)

    _, _, ious = match_objects(table, gt_ids, pred_ids, iou_threshold)
    n_gt = int(np.count_nonzero(gt_ids))
    n_pred = int(np.count_nonzero(pred_ids))
    tp = ious.size
    precision = tp / n_pred if n_pred else float(n_gt == 0)
    recall = tp / n_gt if n_gt else float(n_pred == 0)
    scores["detection_precision"] = float(precision)
    scores["detection_recall"] = float(recall)
    scores["detection_f1"] = (
        2 * precision * recall / (precision + recall) if precision + recall else 0.0
    )
    scores["mean_matched_iou"] = float(ious.mean()) if tp else float(n_gt == 0 and n_pred == 0)
    return scores
