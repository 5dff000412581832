"""Overlap table and optimal matchings against dense references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linear_sum_assignment

from dacapo_hydra.evaluation.matching import (
    compact,
    match_max_iou,
    match_objects,
    max_weight_matching,
    overlaps,
)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([[0, 5, 5], [7, 0, 2]], np.uint16),
        np.array([3, 2**40, 2**63 + 7, 3], np.uint64),  # huge ids: the sorting path
        np.array([4, 4, 9], np.int64),  # no background
        np.zeros(0, np.int64),
        # Very many distinct huge ids: the argsort path.
        np.random.default_rng(0).integers(2**40, 2**41, 70_000, dtype=np.uint64),
    ],
)
def test_compact_round_trips(labels: np.ndarray) -> None:
    ids, index = compact(labels)
    assert ids[0] == 0 and np.all(np.diff(ids.astype(np.float64)) > 0)
    assert index.shape == labels.shape
    np.testing.assert_array_equal(ids[index], labels)
    assert set(ids[1:].tolist()) == set(labels[labels != 0].tolist())


def test_table_equals_dense_counts() -> None:
    rng = np.random.default_rng(3)
    gt, pred = rng.integers(0, 5, (9, 8)), rng.integers(0, 7, (9, 8)) * 1000
    mask = rng.random(gt.shape) < 0.6
    table = overlaps(gt, pred, mask)
    dense = np.zeros((table.gt_ids.size, table.pred_ids.size), np.int64)
    np.add.at(
        dense,
        (np.searchsorted(table.gt_ids, gt[mask]), np.searchsorted(table.pred_ids, pred[mask])),
        1,
    )
    np.testing.assert_array_equal(table.table().toarray(), dense)
    assert table.n_voxels == mask.sum()
    np.testing.assert_array_equal(table.gt_labels[~mask], 0)
    np.testing.assert_array_equal(table.gt_ids[table.gt_labels[mask]], gt[mask])


weights = st.integers(1, 7).flatmap(
    lambda rows: st.integers(1, 7).flatmap(
        lambda cols: arrays(
            np.float64,
            (rows, cols),
            elements=st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.3, 0.5, 0.5, 0.9, 1.0]),
        )
    )
)


@settings(max_examples=150, deadline=None, database=None)
@given(weights)
def test_matching_is_optimal(w: np.ndarray) -> None:
    rows, cols = np.nonzero(w)
    chosen = max_weight_matching(rows, cols, w[rows, cols])
    assert np.unique(rows[chosen]).size == chosen.size == np.unique(cols[chosen]).size
    best_rows, best_cols = linear_sum_assignment(w, maximize=True)
    assert w[rows[chosen], cols[chosen]].sum() == pytest.approx(w[best_rows, best_cols].sum())


def _greedy(iou: np.ndarray, threshold: float) -> int:
    """Matches taken best IoU first: what the Hungarian matching improves on."""
    taken_rows, taken_cols, n = set(), set(), 0
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] >= threshold and i not in taken_rows and j not in taken_cols:
            taken_rows.add(i)
            taken_cols.add(j)
            n += 1
    return n


def test_assignment_finds_more_matches_than_greedy() -> None:
    gt = np.zeros(20, np.int64)
    gt[0:10], gt[10:20] = 1, 2
    pred = np.zeros(20, np.int64)
    pred[3:15], pred[0:3] = 7, 8
    table = overlaps(gt, pred)
    rows, cols, _, iou = table.pairs
    dense = np.zeros((3, 3))
    dense[rows, cols] = iou
    assert dense[1, 1] == pytest.approx(7 / 15)  # A-P, the best pair
    assert _greedy(dense, 0.25) == 1
    match = match_objects(table, 0.25)
    pairs = zip(table.gt_ids[match.gt].tolist(), table.pred_ids[match.pred].tolist(), strict=True)
    assert sorted(pairs) == [(1, 8), (2, 7)]
    assert match.iou.sum() == pytest.approx(0.3 + 5 / 17)
    assert match_max_iou(table).size == 2
    # At 0.4 only A-P qualifies.
    assert match_objects(table, 0.4).size == 1


def test_stardist_convention_counts_first() -> None:
    # StarDist maximises the number of matches at IoU >= t before their IoU sum; the
    # challenge maximises the IoU sum. IoU(A, P) = 0.9 alone beats A-Q + B-P by IoU sum.
    rows = np.array([1, 1, 2])
    cols = np.array([1, 2, 1])
    iou = np.array([0.9, 0.2, 0.2])
    by_count = max_weight_matching(rows, cols, 1.0 + iou / 4)
    by_iou = max_weight_matching(rows, cols, iou)
    assert by_count.size == 2 and by_iou.tolist() == [0]
