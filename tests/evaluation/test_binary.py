"""Binary scores equal MONAI's Dice/Hausdorff and hand-computed CREMI distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy.ndimage import binary_erosion
from scipy.spatial.distance import directed_hausdorff

from dacapo_hydra.evaluation.binary import (
    BINARY_SCORE_DIRECTIONS,
    binary_scores,
    hausdorff_distances,
    overlap_scores,
)


def _random_pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(shape) < 0.3, rng.random(shape) < 0.4


def _structured_pair(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    grid = np.indices(shape)
    centre = np.array(shape)[(slice(None),) + (None,) * len(shape)] / 2
    radius = np.sqrt(((grid - centre) ** 2).sum(0))
    gt = radius < min(shape) / 3
    pred = np.roll(radius < min(shape) / 3.5, 2, axis=-1)
    pred[(slice(0, 3),) * len(shape)] = True  # a stray blob far from the truth
    return pred, gt


PAIRS = {
    "random_2d": lambda: _random_pair((23, 31), 0),
    "random_3d": lambda: _random_pair((11, 13, 17), 1),
    "structured_2d": lambda: _structured_pair((40, 36)),
    "structured_3d": lambda: _structured_pair((20, 24, 22)),
}


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32))[None, None]


@pytest.mark.parametrize("name", PAIRS)
def test_dice_and_hausdorff_equal_monai(name: str) -> None:
    pred, gt = PAIRS[name]()
    voxel_size = (4.0, 6.0, 5.0)[-pred.ndim :]
    scores = binary_scores(pred, gt, None, voxel_size)
    assert scores["dice"] == pytest.approx(compute_dice(_t(pred), _t(gt)).item(), abs=1e-6)
    for key, percentile in (("hausdorff", None), ("hausdorff_95", 95)):
        expected = compute_hausdorff_distance(
            _t(pred), _t(gt), include_background=True, percentile=percentile, spacing=voxel_size
        ).item()
        assert scores[key] == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", ["structured_2d", "structured_3d"])
def test_hausdorff_equals_scipy_on_surface_points(name: str) -> None:
    """An independent check of the surface Hausdorff distance, with scipy alone."""
    pred, gt = PAIRS[name]()
    voxel_size = np.array((4.0, 6.0, 5.0)[-pred.ndim :])

    def surface(x: np.ndarray) -> np.ndarray:
        edge = x & ~binary_erosion(x, border_value=0)
        return np.argwhere(edge) * voxel_size

    a, b = surface(pred), surface(gt)
    expected = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
    assert hausdorff_distances(pred, gt, voxel_size)[0] == pytest.approx(expected, abs=1e-6)


def test_counts_and_cremi_distances_by_hand() -> None:
    # 1D-like 2D strip, voxel 10 nm along x: truth x in [2, 6), prediction x in [4, 9).
    gt = np.zeros((1, 12), bool)
    gt[0, 2:6] = True
    pred = np.zeros((1, 12), bool)
    pred[0, 4:9] = True
    s = binary_scores(pred, gt, None, (10.0, 10.0), tol_distance=15.0, clip_distance=20.0)
    assert (s["false_positives"], s["false_negatives"]) == (3, 2)
    assert s["dice"] == pytest.approx(2 * 2 / 9)
    assert s["jaccard"] == pytest.approx(2 / 7)
    assert s["precision"] == pytest.approx(2 / 5)
    assert s["recall"] == pytest.approx(2 / 4)
    assert s["false_positive_rate"] == pytest.approx(3 / 8)
    assert s["false_discovery_rate"] == pytest.approx(3 / 5)
    # False positives at x = 6, 7, 8 lie 10, 20, 30 nm from the truth (last at x = 5);
    # false negatives at x = 2, 3 lie 20, 10 nm from the prediction (first at x = 4).
    assert s["mean_false_positive_distance"] == pytest.approx(20.0)
    assert s["mean_false_negative_distance"] == pytest.approx(15.0)
    assert s["mean_false_distance"] == pytest.approx(17.5)
    assert s["mean_false_positive_distance_clipped"] == pytest.approx(50 / 3)
    assert s["mean_false_negative_distance_clipped"] == pytest.approx(15.0)
    # Within 15 nm: predicted x = 4..6 of 5; true x = 3..5 of 4.
    assert s["precision_with_tolerance"] == pytest.approx(3 / 5)
    assert s["recall_with_tolerance"] == pytest.approx(3 / 4)
    assert s["f1_with_tolerance"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert s["hausdorff"] == pytest.approx(30.0)


def test_mask_excludes_unannotated_voxels() -> None:
    gt = np.zeros((8, 8), bool)
    gt[2:5, 2:5] = True
    pred = gt.copy()
    pred[6:, 6:] = True  # false positives, but where nothing is annotated
    mask = np.ones((8, 8), np.uint8)
    mask[6:, 6:] = 0
    assert binary_scores(pred, gt, mask, (1.0, 1.0))["dice"] == 1.0
    assert binary_scores(pred, gt, None, (1.0, 1.0))["dice"] < 1.0


def test_empty_inputs_give_finite_scores() -> None:
    empty = np.zeros((6, 6), bool)
    full = np.ones((6, 6), bool)
    both = binary_scores(empty, empty, None, (2.0, 2.0))
    assert both["dice"] == 1.0 and both["hausdorff"] == 0.0
    missed = binary_scores(empty, full, None, (2.0, 2.0))
    assert all(np.isfinite(v) for v in missed.values())
    assert missed["dice"] == 0.0 and missed["recall"] == 0.0
    assert missed["hausdorff"] == pytest.approx(np.hypot(12.0, 12.0))
    assert set(both) == set(BINARY_SCORE_DIRECTIONS)
    assert set(overlap_scores(empty, full, None)) <= set(BINARY_SCORE_DIRECTIONS)


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="prediction shape"):
        binary_scores(np.zeros((3, 3)), np.zeros((3, 4)), None, (1.0, 1.0))
