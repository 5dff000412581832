"""Instances from affinities by fragments and hierarchical agglomeration (waterz-style).

Fragments are a watershed of the boundary map (1 - mean nearest-neighbour affinity)
from the maxima of the distance to the boundary, as the LSD pipelines make them;
neighbouring fragments then merge, most strongly connected first, while the mean
affinity of the edges between them exceeds a threshold (waterz's "mean affinity"
scoring). The region graph and the merging are scikit-image's (`graph.RAG`,
`graph.merge_hierarchical`); only the edge statistics are summed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt, maximum_filter
from scipy.ndimage import label as connected_components
from skimage import graph
from skimage.segmentation import watershed

from dacapo_hydra.tasks.instances.size_filter import relabel
from dacapo_hydra.tasks.shifts import shifted_pairs


def _nearest(offsets: Sequence[Sequence[int]]) -> list[int]:
    """Channels whose offset is one step along one axis."""
    return [i for i, o in enumerate(offsets) if sum(abs(int(v)) for v in o) == 1]


def fragments(
    affinities: np.ndarray,
    offsets: Sequence[Sequence[int]],
    voxel_size: Sequence[float],
    foreground_threshold: float = 0.5,
) -> np.ndarray:
    """Over-segmentation (*spatial) uint64 of the foreground into fragments.

    The foreground is where the mean nearest-neighbour affinity exceeds
    `foreground_threshold` (background has affinity 0 to everything). Seeds are
    the local maxima (3 voxels wide) of the distance (nm) to the nearest non-
    foreground voxel; they grow over the boundary map.
    """
    nearest = _nearest(offsets) or list(range(len(offsets)))
    mean = affinities[nearest].mean(axis=0)
    foreground = mean > foreground_threshold
    if not foreground.any():
        return np.zeros(mean.shape, np.uint64)
    distance = distance_transform_edt(foreground, sampling=voxel_size)
    seeds = (distance == maximum_filter(distance, size=3)) & foreground
    markers, _ = connected_components(seeds)
    return watershed(1.0 - mean, markers=markers, mask=foreground).astype(np.uint64)


def _merge_weight(rag: graph.RAG, src: int, dst: int, neighbour: int) -> dict[str, float]:
    """Edge statistics of `neighbour` to the union of `src` and `dst` (summed)."""
    total, count = 0.0, 0.0
    for node in (src, dst):
        if rag.has_edge(node, neighbour):
            edge = rag[node][neighbour]
            total += edge["total"]
            count += edge["count"]
    return {"total": total, "count": count, "weight": 1.0 - total / count}


def agglomerate(
    fragment_ids: np.ndarray,
    affinities: np.ndarray,
    offsets: Sequence[Sequence[int]],
    thresholds: Sequence[float],
) -> dict[float, np.ndarray]:
    """Segmentations (*spatial) uint64, ids 1..n, one per merge threshold.

    Fragments merge, strongest first, while the mean affinity of the nearest-
    neighbour edges between them (long-range channels would join fragments that do
    not touch) exceeds the threshold; a lower threshold
    merges more. The merging runs once, from the highest threshold down, and each
    threshold's state is read off on the way.

    Args:
        fragment_ids: (*spatial) fragments, 0 = background.
        affinities: (C, *spatial) in [0, 1]; channel c links x and x + offsets[c].
        offsets: per channel, the offset in voxels.
        thresholds: mean affinities in (0, 1) at which merging stops.

    """
    compact = relabel(fragment_ids).astype(np.int64)
    n = int(compact.max())
    keys, sums, counts = [], [], []
    nearest = _nearest(offsets) or list(range(len(offsets)))
    for c in nearest:
        channel, offset = affinities[c], offsets[c]
        here, there = shifted_pairs(compact.shape, offset)
        a, b = compact[here].ravel(), compact[there].ravel()
        edge = (a != b) & (a != 0) & (b != 0)
        lo, hi = np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])
        keys.append(lo * (n + 1) + hi)
        sums.append(channel[here].ravel()[edge].astype(np.float64))
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    unique, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=np.concatenate(sums) if sums else None)
    counts = np.bincount(inverse)
    rag = graph.RAG()
    rag.add_nodes_from((i, {"labels": [i]}) for i in range(1, n + 1))
    for k, t, c in zip(unique.tolist(), total.tolist(), counts.tolist(), strict=True):
        rag.add_edge(k // (n + 1), k % (n + 1), total=t, count=c, weight=1.0 - t / c)
    out: dict[float, np.ndarray] = {}
    lookup = np.zeros(n + 1, np.uint64)
    for threshold in sorted({float(t) for t in thresholds}, reverse=True):
        graph.merge_hierarchical(
            compact,
            rag,
            thresh=1.0 - threshold,
            rag_copy=False,
            in_place_merge=True,
            merge_func=lambda *_: None,
            weight_func=_merge_weight,
        )
        for index, (_, data) in enumerate(sorted(rag.nodes(data=True)), start=1):
            lookup[data["labels"]] = index
        out[threshold] = lookup[compact]
    return out
