"""Binary segmentation scores, distances in world units (nm).

Overlap counts and the ratios built on them are plain numpy. The symmetric
Hausdorff distance and its 95th percentile are MONAI's (surface to surface,
with the voxel size as spacing). The CREMI-style distance scores DaCapo reports
(mean false positive/negative distance, clipped or not, and precision/recall
within a tolerance) are not in scikit-image, MONAI or scipy; they are written
here on top of scipy's Euclidean distance transform.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics.utils import get_edge_surface_distance
from scipy.ndimage import distance_transform_edt

# True: higher is better, for every score `binary_scores` returns.
BINARY_SCORE_DIRECTIONS: dict[str, bool] = {
    "dice": True,
    "jaccard": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "false_positive_rate": False,
    "false_negative_rate": False,
    "false_discovery_rate": False,
    "false_positives": False,
    "false_negatives": False,
    "hausdorff": False,
    "hausdorff_95": False,
    "mean_false_distance": False,
    "mean_false_positive_distance": False,
    "mean_false_negative_distance": False,
    "mean_false_distance_clipped": False,
    "mean_false_positive_distance_clipped": False,
    "mean_false_negative_distance_clipped": False,
    "precision_with_tolerance": True,
    "recall_with_tolerance": True,
    "f1_with_tolerance": True,
}


def _ratio(numerator: float, denominator: float, empty: float) -> float:
    """The ratio, or `empty` where the denominator is 0."""
    return float(numerator / denominator) if denominator else float(empty)


def _check(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if pred.shape != gt.shape:
        raise ValueError(f"evaluation: prediction shape {pred.shape} != ground truth {gt.shape}")
    if mask is None:
        return np.ones(gt.shape, bool)
    if mask.shape != gt.shape:
        raise ValueError(f"evaluation: mask shape {mask.shape} != ground truth {gt.shape}")
    return mask.astype(bool)


def _diagonal(shape: Sequence[int], voxel_size: Sequence[float]) -> float:
    """Length of the volume's diagonal in nm: the distance reported when a set is empty."""
    return float(np.linalg.norm(np.asarray(shape) * np.asarray(voxel_size)))


def hausdorff_distances(
    pred: np.ndarray, gt: np.ndarray, voxel_size: Sequence[float], percentile: float = 95
) -> tuple[float, float]:
    """Symmetric Hausdorff distance (nm) between the surfaces of two masks, and a percentile.

    As MONAI's `compute_hausdorff_distance`, whose surface distances (MONAI's
    `get_edge_surface_distance`) are computed once here for both figures. Both
    masks empty: 0. One empty: the volume's diagonal (the worst distance the
    volume allows, where MONAI would return inf or nan).

    Args:
        pred: predicted foreground, (*spatial) booleans.
        gt: true foreground, (*spatial) booleans.
        voxel_size: nm per voxel, one per axis.
        percentile: the percentile of the surface distances returned second.

    """
    pred, gt = pred.astype(bool), gt.astype(bool)
    if not pred.any() and not gt.any():
        return 0.0, 0.0
    if not pred.any() or not gt.any():
        worst = _diagonal(gt.shape, voxel_size)
        return worst, worst
    with warnings.catch_warnings():
        # MONAI 1.5+ warns about an argument it passes to itself internally.
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy", category=FutureWarning
        )
        _, distances, _ = get_edge_surface_distance(
            torch.from_numpy(pred),
            torch.from_numpy(gt),
            spacing=[float(v) for v in voxel_size],
            symmetric=True,
        )
    maximum = max(float(d.max()) if d.numel() else 0.0 for d in distances)
    quantile = max(
        float(torch.quantile(d.double(), percentile / 100)) if d.numel() else 0.0 for d in distances
    )
    return maximum, quantile


def overlap_scores(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
    """The counting scores of `binary_scores` (dice to false negatives), no distances.

    Args:
        pred: predicted foreground, (*spatial) booleans or 0/1.
        gt: true foreground, (*spatial) booleans or 0/1.
        mask: 1 where the ground truth is annotated, or None for everywhere.

    """
    known = _check(pred, gt, mask)
    pred = pred.astype(bool) & known
    gt = gt.astype(bool) & known
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    tn = int(np.count_nonzero(known)) - tp - fp - fn
    n_pred, n_gt = tp + fp, tp + fn
    dice = _ratio(2 * tp, n_pred + n_gt, 1.0)
    return {
        "dice": dice,
        "jaccard": _ratio(tp, tp + fp + fn, 1.0),
        "precision": _ratio(tp, n_pred, 1.0 if n_gt == 0 else 0.0),
        "recall": _ratio(tp, n_gt, 1.0 if n_pred == 0 else 0.0),
        "f1": dice,
        "false_positive_rate": _ratio(fp, fp + tn, 0.0),
        "false_negative_rate": _ratio(fn, n_gt, 0.0),
        "false_discovery_rate": _ratio(fp, n_pred, 0.0),
        "false_positives": float(fp),
        "false_negatives": float(fn),
    }


def binary_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None,
    voxel_size: Sequence[float],
    tol_distance: float = 40.0,
    clip_distance: float = 200.0,
) -> dict[str, float]:
    """Every score of `BINARY_SCORE_DIRECTIONS` for one binary prediction.

    Voxels outside `mask` count neither as foreground nor background. Ratios whose
    denominator is empty take their best value where nothing could go wrong (for
    example precision with no prediction and no ground truth is 1) and their worst
    otherwise, so every score is finite.

    Args:
        pred: predicted foreground, (*spatial) booleans or 0/1.
        gt: true foreground, (*spatial) booleans or 0/1.
        mask: 1 where the ground truth is annotated, or None for everywhere.
        voxel_size: nm per voxel, one per axis.
        tol_distance: nm; a voxel within this distance of the other set counts as
            found in the tolerance scores.
        clip_distance: nm; distances are clipped to this in the `*_clipped` scores.

    """
    scores = overlap_scores(pred, gt, mask)
    if len(voxel_size) != gt.ndim:
        raise ValueError(f"evaluation: voxel_size {tuple(voxel_size)} has not {gt.ndim} entries")
    known = _check(pred, gt, mask)
    pred = pred.astype(bool) & known
    gt = gt.astype(bool) & known
    scores["hausdorff"], scores["hausdorff_95"] = hausdorff_distances(pred, gt, voxel_size)
    scores.update(_distance_scores(pred, gt, voxel_size, tol_distance, clip_distance))
    return scores


def _distance_to(target: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Distance (nm) from every voxel to the nearest voxel of `target` (diagonal if none)."""
    if not target.any():
        return np.full(target.shape, _diagonal(target.shape, voxel_size))
    return distance_transform_edt(~target, sampling=voxel_size)


def _distance_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    voxel_size: Sequence[float],
    tol_distance: float,
    clip_distance: float,
) -> dict[str, float]:
    """CREMI-style distances of false positives to the truth and false negatives to the test."""
    to_gt = _distance_to(gt, voxel_size)
    to_pred = _distance_to(pred, voxel_size)
    fp_distances = to_gt[pred & ~gt]
    fn_distances = to_pred[gt & ~pred]

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else 0.0

    fp_mean, fn_mean = mean(fp_distances), mean(fn_distances)
    fp_clipped = mean(np.minimum(fp_distances, clip_distance))
    fn_clipped = mean(np.minimum(fn_distances, clip_distance))
    n_pred, n_gt = int(pred.sum()), int(gt.sum())
    precision = _ratio(
        np.count_nonzero(to_gt[pred] <= tol_distance), n_pred, 1.0 if n_gt == 0 else 0.0
    )
    recall = _ratio(
        np.count_nonzero(to_pred[gt] <= tol_distance), n_gt, 1.0 if n_pred == 0 else 0.0
    )
    return {
        "mean_false_distance": 0.5 * (fp_mean + fn_mean),
        "mean_false_positive_distance": fp_mean,
        "mean_false_negative_distance": fn_mean,
        "mean_false_distance_clipped": 0.5 * (fp_clipped + fn_clipped),
        "mean_false_positive_distance_clipped": fp_clipped,
        "mean_false_negative_distance_clipped": fn_clipped,
        "precision_with_tolerance": precision,
        "recall_with_tolerance": recall,
        "f1_with_tolerance": _ratio(2 * precision * recall, precision + recall, 0.0),
    }
