"""Overlap table of two instance segmentations, and optimal one-to-one object matching.

`overlaps` counts, for every (ground truth, prediction) label pair, the voxels they
share, as a sparse table over compact indices: labels can be huge ids (agglomeration,
blockwise relabelling) and only the pairs that actually touch are stored. The same
table feeds the information-theoretic scores, the IoU of every overlapping object
pair and the matchings.

`match_objects` follows StarDist's `stardist.matching.matching` (the convention of
the 2018 Data Science Bowl and Cellpose): a pair can match at threshold t when its
IoU >= t, and the matching has the most such pairs, ties broken by the largest sum
of IoUs. `match_max_iou` is the CellMap segmentation challenge's matching: every
overlapping pair can match and the sum of IoUs is maximal. Both solve the linear
assignment problem exactly on the sparse graph of overlapping pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

# Above this many possible (gt, pred) index pairs, pair counts are found by sorting
# instead of a dense bincount.
_DENSE_PAIRS = 1 << 22


@dataclass(frozen=True)
class Overlaps:
    """Sparse contingency table of ground-truth (rows) and predicted (columns) labels.

    Labels are replaced by compact indices: index 0 is the background (label 0, present
    or not), objects are 1..n in increasing label order. Only voxels in the mask count.

    Attributes:
        gt_ids: label value of each ground-truth index (`gt_ids[0] == 0`).
        pred_ids: label value of each predicted index (`pred_ids[0] == 0`).
        rows: ground-truth index of each nonzero table entry.
        cols: predicted index of each nonzero table entry.
        counts: voxels shared by the entry's two labels (> 0).
        gt_sizes: voxels of each ground-truth index (`gt_sizes[0]`: background).
        pred_sizes: voxels of each predicted index.
        gt_labels: (*spatial) ground-truth index per voxel, 0 outside the mask.
        pred_labels: (*spatial) predicted index per voxel, 0 outside the mask.

    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    counts: np.ndarray
    gt_sizes: np.ndarray
    pred_sizes: np.ndarray
    gt_labels: np.ndarray
    pred_labels: np.ndarray

    @property
    def n_gt(self) -> int:
        """Ground-truth objects with at least one voxel in the mask."""
        return self.gt_ids.size - 1

    @property
    def n_pred(self) -> int:
        """Predicted objects with at least one voxel in the mask."""
        return self.pred_ids.size - 1

    @property
    def n_voxels(self) -> int:
        """Voxels counted (those in the mask)."""
        return int(self.gt_sizes.sum())

    @cached_property
    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Overlapping pairs of objects (background excluded) and their IoU.

        Returns:
            Ground-truth indices, predicted indices, shared voxels and IoUs, one entry
            per pair sharing at least one voxel, sorted by ground-truth index.

        """
        keep = (self.rows > 0) & (self.cols > 0)
        rows, cols, counts = self.rows[keep], self.cols[keep], self.counts[keep]
        union = self.gt_sizes[rows] + self.pred_sizes[cols] - counts
        return rows, cols, counts, counts / union

    def table(self) -> sparse.csr_array:
        """The table as a sparse (n_gt + 1, n_pred + 1) array of voxel counts."""
        return sparse.csr_array(
            (self.counts, (self.rows, self.cols)), shape=(self.gt_ids.size, self.pred_ids.size)
        )


def _as_labels(x: np.ndarray, name: str) -> np.ndarray:
    """`x` as non-negative integers, or a ValueError naming `name`."""
    x = np.asarray(x)
    if x.dtype == bool:
        return x.view(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not np.array_equal(x, np.round(x)):
            raise ValueError(f"evaluation: {name} labels must be integers, got {x.dtype} values")
        x = x.astype(np.int64)
    elif not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"evaluation: {name} labels must be integers, got {x.dtype}")
    if np.issubdtype(x.dtype, np.signedinteger) and x.size and x.min() < 0:
        raise ValueError(f"evaluation: {name} labels must be non-negative")
    return x


def compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compact indices of non-negative integer labels, background 0 kept at index 0.

    Args:
        labels: label values, any shape.

    Returns:
        The label value of each index (`ids[0] == 0`, then the present non-zero labels
        in increasing order) and the index of every element (same shape, int32 or int64).

    """
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= max(flat.size, 1 << 16):
        # Small label values: a lookup table (no bigger than the labels), linear time.
        flat = flat.astype(np.intp, copy=False)
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = True
        ids = np.flatnonzero(present).astype(labels.dtype)
        dtype = np.int32 if ids.size < 2**31 else np.int64
        index = (np.cumsum(present) - 1).astype(dtype)[flat]
    else:
        # Huge ids: sort (faster than np.unique's hashing for integers) and search,
        # or, for very many distinct ids (binary search then misses the cache), argsort.
        ordered = np.sort(flat)
        first = np.ones(ordered.size, bool)
        first[1:] = ordered[1:] != ordered[:-1]
        ids = ordered[first]
        if ids.size <= 1 << 16:
            index = np.searchsorted(ids, flat)
        else:
            index = np.empty(flat.size, np.int64)
            index[np.argsort(flat, kind="stable")] = np.cumsum(first) - 1
        if ids[0] != 0:
            ids = np.concatenate([np.zeros(1, ids.dtype), ids])
            index += 1
        dtype = np.int32 if ids.size < 2**31 else np.int64
        index = index.astype(dtype)
    return ids, index.reshape(labels.shape)


def overlaps(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> Overlaps:
    """The sparse contingency table of `gt` and `pred` over the voxels in `mask`.

    Args:
        gt: true instance labels, (*spatial) non-negative integers, 0 = background.
        pred: predicted instance labels, same shape, 0 = background.
        mask: voxels to count (nonzero = annotated), or None for all.

    Returns:
        The table; objects are the parts of labels inside the mask.

    """
    gt = _as_labels(gt, "ground truth")
    pred = _as_labels(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"evaluation: prediction shape {pred.shape} != ground truth {gt.shape}")
    if mask is None:
        gt_ids, gt_labels = compact(gt)
        pred_ids, pred_labels = compact(pred)
        gt_flat, pred_flat = gt_labels.ravel(), pred_labels.ravel()
    else:
        mask = np.asarray(mask)
        if mask.shape != gt.shape:
            raise ValueError(f"evaluation: mask shape {mask.shape} != ground truth {gt.shape}")
        keep = mask.astype(bool)
        gt_ids, gt_flat = compact(gt[keep])
        pred_ids, pred_flat = compact(pred[keep])
        gt_labels = np.zeros(gt.shape, gt_flat.dtype)
        gt_labels[keep] = gt_flat
        pred_labels = np.zeros(gt.shape, pred_flat.dtype)
        pred_labels[keep] = pred_flat
    n_cols = pred_ids.size
    keys = gt_flat.astype(np.int64) * n_cols + pred_flat
    if gt_ids.size * n_cols <= max(keys.size, _DENSE_PAIRS):
        dense = np.bincount(keys, minlength=gt_ids.size * n_cols)
        keys = np.flatnonzero(dense)
        counts = dense[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    rows, cols = np.divmod(keys, n_cols)
    counts = counts.astype(np.int64)
    return Overlaps(
        gt_ids=gt_ids,
        pred_ids=pred_ids,
        rows=rows,
        cols=cols,
        counts=counts,
        gt_sizes=np.bincount(rows, weights=counts, minlength=gt_ids.size).astype(np.int64),
        pred_sizes=np.bincount(cols, weights=counts, minlength=n_cols).astype(np.int64),
        gt_labels=gt_labels,
        pred_labels=pred_labels,
    )


def _best_per_node(nodes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Index of one largest weight per distinct node, among edges given by their node."""
    order = np.lexsort((-weights, nodes))
    first = np.ones(order.size, bool)
    first[1:] = nodes[order[1:]] != nodes[order[:-1]]
    return order[first]


def _prune(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Edges that keep an optimal matching: of a node's leaves, only its best one.

    A column whose only edge goes to row i can replace any other such column of row i
    in a matching (it has no other partner to lose), so only the heaviest is kept; the
    same for rows. Returns the indices of the edges kept.
    """
    kept = np.arange(rows.size)
    for leaf_side, hub_side in ((cols, rows), (rows, cols)):
        own, other, w = leaf_side[kept], hub_side[kept], weights[kept]
        leaf = np.bincount(own)[own] == 1
        if np.count_nonzero(leaf) <= 1:
            continue
        leaves = np.flatnonzero(leaf)
        best = leaves[_best_per_node(other[leaves], w[leaves])]
        kept = kept[np.sort(np.concatenate([np.flatnonzero(~leaf), best]))]
    return kept


def max_weight_matching(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A one-to-one matching of maximal total weight among the given edges.

    The optimal assignment on a sparse bipartite graph where any node may stay
    unmatched: each row and each column gets a private dummy partner (cost `u` for
    being unmatched) and every real edge (i, j) a dummy-to-dummy twin, so the
    augmented square problem always has a full matching, of cost
    `u * (n_rows + n_cols) - sum(matched weights)`. It is solved exactly by
    scipy's sparse Jonker-Volgenant solver (LAPJVsp), the same optimum as
    `scipy.optimize.linear_sum_assignment` on the dense weight matrix with
    non-edges at weight 0, without building that matrix. Leaves that cannot improve
    on a sibling are dropped first, so thousands of fragments inside one object cost
    little.

    Args:
        rows: row node of each edge (non-negative integers, e.g. compact indices).
        cols: column node of each edge (non-negative integers).
        weights: weight of each edge, > 0.

    Returns:
        Indices of the matched edges, increasing.

    """
    if rows.size <= 1:
        return np.arange(rows.size)
    weights = np.asarray(weights, np.float64)
    kept = _prune(rows, cols, weights)
    row_nodes, r = np.unique(rows[kept], return_inverse=True)
    col_nodes, c = np.unique(cols[kept], return_inverse=True)
    n_r, n_c, n_e = row_nodes.size, col_nodes.size, kept.size
    if n_e == 1:
        return kept
    weights = weights[kept]
    unmatched = float(weights.max()) + 1.0
    twin = 1.0
    # Augmented (n_r + n_c) square problem, all costs > 0 (LAPJVsp drops zeros):
    # rows [real rows | dummy rows of columns], columns [real columns | dummy columns of rows].
    big_rows = np.concatenate([r, np.arange(n_r), n_r + np.arange(n_c), n_r + c])
    big_cols = np.concatenate([c, n_c + np.arange(n_r), np.arange(n_c), n_c + r])
    costs = np.concatenate(
        [
            2 * unmatched - twin - weights,
            np.full(n_r, unmatched),
            np.full(n_c, unmatched),
            np.full(n_e, twin),
        ]
    )
    size = n_r + n_c
    graph = sparse.csr_array((costs, (big_rows, big_cols)), shape=(size, size))
    matched_rows, matched_cols = min_weight_full_bipartite_matching(graph)
    real = (matched_rows < n_r) & (matched_cols < n_c)
    # Edge index of each matched real (row, column) pair: pairs are unique edges.
    keys = r.astype(np.int64) * n_c + c
    order = np.argsort(keys)
    found = np.searchsorted(
        keys, matched_rows[real].astype(np.int64) * n_c + matched_cols[real], sorter=order
    )
    return np.sort(kept[order[found]])


@dataclass(frozen=True)
class Matching:
    """Matched object pairs (compact indices, see `Overlaps`) and their overlaps.

    Attributes:
        gt: ground-truth index of each match.
        pred: predicted index of each match.
        counts: voxels the pair shares.
        iou: intersection over union of the pair.

    """

    gt: np.ndarray
    pred: np.ndarray
    counts: np.ndarray
    iou: np.ndarray

    @property
    def size(self) -> int:
        """Number of matched pairs."""
        return int(self.gt.size)


def _select(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, iou: np.ndarray, chosen: np.ndarray
) -> Matching:
    return Matching(gt=rows[chosen], pred=cols[chosen], counts=counts[chosen], iou=iou[chosen])


def match_objects(table: Overlaps, iou_threshold: float = 0.5) -> Matching:
    """One-to-one matching of objects at an IoU threshold, as StarDist's `matching`.

    Pairs with IoU >= `iou_threshold` can match; the matching has the most pairs, ties
    broken by the largest sum of IoUs (StarDist's costs `-(iou >= t) - iou / (2 n)`,
    n = min(n_gt, n_pred)). Above 0.5 an object overlaps at most one other that much
    and the matching is unique; at 0.5 and below the assignment matters.

    Args:
        table: the overlap table.
        iou_threshold: the smallest IoU of a match, in (0, 1].

    Returns:
        The matched pairs.

    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"evaluation: iou_threshold must be in (0, 1], got {iou_threshold}")
    rows, cols, counts, iou = table.pairs
    keep = iou >= iou_threshold
    rows, cols, counts, iou = rows[keep], cols[keep], counts[keep], iou[keep]
    n = max(1, min(table.n_gt, table.n_pred))
    chosen = max_weight_matching(rows, cols, 1.0 + iou / (2 * n))
    return _select(rows, cols, counts, iou, chosen)


def match_max_iou(table: Overlaps) -> Matching:
    """One-to-one matching of overlapping objects with the largest sum of IoUs.

    The CellMap segmentation challenge's matching (`match_instances` in
    `cellmap_segmentation_challenge/utils/eval_utils/instance_matching.py`): a min-cost
    flow where a match costs `(1 - iou) * 1e6` and an unmatched ground-truth object
    `1e6 + 1`, that is, every pair with IoU > 0 can match and the matching maximises
    `sum(iou) + 1e-6 * matches`. No IoU threshold.

    Args:
        table: the overlap table.

    Returns:
        The matched pairs.

    """
    rows, cols, counts, iou = table.pairs
    chosen = max_weight_matching(rows, cols, iou + 1e-6)
    return _select(rows, cols, counts, iou, chosen)
