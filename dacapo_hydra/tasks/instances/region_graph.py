"""Region graphs of fragments: touching pairs, their boundary affinities, and components.

Shared by the in-memory agglomeration route
(:func:`~dacapo_hydra.tasks.instances.agglomeration.agglomerate`) and blockwise labels,
whose region graph (:mod:`dacapo_hydra.inference.graph`) has the same rows whatever
the blocks: a pair of fragments touches inside one block or across one face, and its
row sums over exactly the voxel pairs that touch. Components are scipy's
(`csgraph.connected_components`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dacapo_hydra.tasks.shifts import shifted_pairs


def edge_stats(u: np.ndarray, v: np.ndarray, values: np.ndarray | None) -> dict[str, np.ndarray]:
    """One row per fragment pair: contacts and the statistics of `values` over them.

    Args:
        u: first fragment of each touching voxel pair (uint64).
        v: second fragment (uint64, != u).
        values: the affinity of each voxel pair, or None.

    Returns:
        Columns `u` < `v`, `contact`, `aff_count`, `aff_sum`, `aff_mean`, `aff_q10`,
        `aff_q50`, `aff_q90` (NaN without values), sorted by (`u`, `v`).

    Examples:
        >>> e = edge_stats(np.array([2, 1, 2], np.uint64), np.array([1, 2, 3], np.uint64),
        ...                np.array([0.5, 1.0, 0.25]))
        >>> e["u"].tolist(), e["v"].tolist(), e["contact"].tolist(), e["aff_mean"].tolist()
        ([1, 2], [2, 3], [2, 1], [0.75, 0.25])

    """
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    vals = np.full(lo.shape, np.nan) if values is None else values.astype(np.float64)
    order = np.lexsort((vals, hi, lo))
    lo, hi, vals = lo[order], hi[order], vals[order]
    starts = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])] if lo.size else []
    first = np.flatnonzero(starts)
    count = np.diff(np.r_[first, lo.size])
    out: dict[str, np.ndarray] = {
        "u": lo[first].astype(np.uint64),
        "v": hi[first].astype(np.uint64),
        "contact": count.astype(np.int64),
    }
    total = np.add.reduceat(vals, first) if first.size else np.zeros(0)
    out["aff_count"] = count.astype(np.int64) if values is not None else np.zeros_like(count)
    out["aff_sum"] = total
    out["aff_mean"] = total / np.maximum(count, 1)
    for q in (10, 50, 90):
        # Values are sorted within each pair: the quantile is a position in its run.
        at = first + np.floor((count - 1) * q / 100).astype(np.int64)
        out[f"aff_q{q}"] = vals[at] if first.size else np.zeros(0)
    return out


def nearest_channels(offsets: Sequence[Sequence[int]]) -> list[int]:
    """Channels whose offset is one step along one axis (those whose pairs touch)."""
    return [i for i, o in enumerate(offsets) if sum(abs(int(v)) for v in o) == 1]


def fragment_edges(
    fragments: np.ndarray, affinities: np.ndarray | None, offsets: Sequence[Sequence[int]]
) -> dict[str, np.ndarray]:
    """The region graph of `fragments` (*spatial; 0 = none): :func:`edge_stats` rows.

    Pairs are the voxels one step apart along an axis (the nearest-neighbour
    channels of `affinities`, whose value at x links x and x + offset) in two
    different fragments.
    """
    us, vs, values = [], [], []
    for c in nearest_channels(offsets):
        here, there = shifted_pairs(fragments.shape, offsets[c])
        a, b = fragments[here].ravel(), fragments[there].ravel()
        edge = (a != b) & (a != 0) & (b != 0)
        us.append(a[edge])
        vs.append(b[edge])
        if affinities is not None:
            values.append(affinities[c][here].ravel()[edge])
    if not us:
        return edge_stats(np.zeros(0, np.uint64), np.zeros(0, np.uint64), None)
    cat = np.concatenate
    return edge_stats(
        cat(us).astype(np.uint64),
        cat(vs).astype(np.uint64),
        cat(values) if affinities is not None else None,
    )


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph of edges (`u`, `v`) over the ids they name.

    Returns:
        The ids (sorted) and each one's root: the smallest id of its component.

    Examples:
        >>> ids, roots = components(np.array([5, 9, 2]), np.array([9, 7, 3]))
        >>> ids.tolist(), roots.tolist()
        ([2, 3, 5, 7, 9], [2, 2, 5, 5, 5])

    """
    ids, inverse = np.unique(np.concatenate([u, v]), return_inverse=True)
    n = ids.size
    inverse = inverse.ravel()
    graph = coo_matrix((np.ones(u.size, np.int8), (inverse[: u.size], inverse[u.size :])), (n, n))
    _, component = connected_components(graph, directed=False)
    # ids are sorted, so the first member of each component is its smallest id.
    first = np.full(component.max(initial=-1) + 1, n, np.int64)
    np.minimum.at(first, component, np.arange(n))
    return ids, ids[first[component]]
