"""Instances from affinities by fragments and hierarchical agglomeration (waterz-style).

Fragments are a watershed of the boundary map (1 - mean nearest-neighbour affinity)
from the maxima of the distance to the boundary, as the LSD pipelines make them;
touching fragments then merge where the mean affinity over their shared boundary
exceeds a threshold (:func:`agglomerate`). The region graph's rows are
:mod:`~dacapo_hydra.tasks.instances.region_graph`'s, the components scipy's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import edt
import numpy as np
from scipy.ndimage import label as connected_components
from scipy.ndimage import maximum_filter
from skimage.segmentation import watershed

from dacapo_hydra.tasks.instances.region_graph import components, fragment_edges, nearest_channels
from dacapo_hydra.tasks.instances.route import Params, Route, RouteSpec, check_unit_interval
from dacapo_hydra.tasks.instances.size_filter import relabel


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
    nearest = nearest_channels(offsets) or list(range(len(offsets)))
    mean = affinities[nearest].mean(axis=0)
    foreground = mean > foreground_threshold
    if not foreground.any():
        return np.zeros(mean.shape, np.uint64)
    # edt's exact transform beats scipy's on these sizes (the fragments pass's limit).
    distance = edt.edt(foreground, anisotropy=tuple(float(v) for v in voxel_size), parallel=1)
    seeds = (distance == maximum_filter(distance, size=3)) & foreground
    markers, _ = connected_components(seeds)
    return watershed(1.0 - mean, markers=markers, mask=foreground).astype(np.uint64)


def agglomerate(
    fragment_ids: np.ndarray,
    affinities: np.ndarray,
    offsets: Sequence[Sequence[int]],
    thresholds: Sequence[float],
) -> dict[float, np.ndarray]:
    """Segmentations (*spatial) uint64, ids 1..n, one per merge threshold.

    Two touching fragments merge when the mean affinity over all the voxel pairs
    where they touch (nearest-neighbour channels; long-range ones would join
    fragments that do not touch) exceeds the threshold; objects are the connected
    components of those merges, so a lower threshold merges more. This is the
    rule of the LSD pipelines' `find_segments` on a region graph scored by mean
    affinity, and it is what blockwise labels solve on the whole volume's region
    graph (:mod:`dacapo_hydra.inference.graph`): every edge's mean is over the same
    voxel pairs whatever the blocks, so the objects are the same at any block shape
    given the same fragments.

    Args:
        fragment_ids: (*spatial) fragments, 0 = background.
        affinities: (C, *spatial) in [0, 1]; channel c links x and x + offsets[c].
        offsets: per channel, the offset in voxels.
        thresholds: mean affinities in (0, 1) at which merging stops.

    """
    edges = fragment_edges(fragment_ids, affinities, offsets)
    ids = np.unique(fragment_ids)
    out: dict[float, np.ndarray] = {}
    for threshold in sorted({float(t) for t in thresholds}, reverse=True):
        keep = edges["aff_mean"] > threshold
        merged, roots = components(edges["u"][keep], edges["v"][keep])
        lookup = ids.copy()
        lookup[np.searchsorted(ids, merged)] = roots
        out[threshold] = relabel(lookup[np.searchsorted(ids, fragment_ids)])
    return out


@dataclass(frozen=True)
class AffinityGraph:
    """The agglomeration route as blockwise labels run it: a region graph, solved globally.

    Each block makes :meth:`fragments` and its region graph's rows
    (:meth:`edges`); the faces between blocks add their rows; the global solve keeps
    the edges whose mean affinity exceeds `threshold` and takes connected components.

    Attributes:
        offsets: the task's neighbourhood (voxels), one per affinity channel.
        voxel_size: nm per voxel.
        threshold: the mean affinity above which fragments merge.

    """

    offsets: tuple[tuple[int, ...], ...]
    voxel_size: tuple[float, ...]
    threshold: float

    def fragments(self, prediction: np.ndarray) -> np.ndarray:
        """Fragments (*spatial) of a block's prediction (its affinities: :func:`fragments`)."""
        return fragments(prediction[: len(self.offsets)], self.offsets, self.voxel_size)

    def edges(self, fragment_ids: np.ndarray, affinities: np.ndarray) -> dict[str, np.ndarray]:
        """Region-graph rows of fragments inside one region (:func:`fragment_edges`)."""
        return fragment_edges(fragment_ids, affinities, self.offsets)

    def face_channels(self) -> dict[int, tuple[int, int]]:
        """Per axis, the nearest-neighbour channel linking across it and its step (+1/-1)."""
        out: dict[int, tuple[int, int]] = {}
        for c in nearest_channels(self.offsets):
            axis = next(i for i, o in enumerate(self.offsets[c]) if o)
            out.setdefault(axis, (c, int(self.offsets[c][axis])))
        return out


class Agglomeration(Route):
    """Fragments merged by mean boundary affinity: `{"route": "agglomeration", "threshold": t}`.

    In memory: :func:`fragments` then :func:`agglomerate`, the fragments made once
    for the whole grid. Blockwise, the region graph is the whole volume's
    (:class:`AffinityGraph`), so merges across blocks look at the affinities.

    Args:
        thresholds: mean affinities at which merging stops, swept (each in (0, 1)).

    """

    name = "agglomeration"

    def __init__(self, thresholds: Sequence[float] = (0.3, 0.5, 0.7)) -> None:
        self.thresholds = check_unit_interval(thresholds, "thresholds")

    def grid(self, spec: RouteSpec) -> list[Params]:
        """One parameter set per threshold."""
        return [{"threshold": t} for t in self.thresholds]

    def run(self, prediction: np.ndarray, params: Params, spec: RouteSpec) -> np.ndarray:
        """Instances of the affinities (C, *spatial) merged above `params["threshold"]`."""
        return next(iter(self.run_grid(prediction, [params], spec)))[1]

    def run_grid(
        self, prediction: np.ndarray, grid: Sequence[Params], spec: RouteSpec
    ) -> Iterator[tuple[Params, np.ndarray]]:
        """Every threshold's instances from one set of fragments and one region graph."""
        frags = fragments(prediction, spec.offsets, spec.voxel_size)
        thresholds = [float(p["threshold"]) for p in grid]
        merged = agglomerate(frags, prediction, spec.offsets, thresholds)
        for params, threshold in zip(grid, thresholds, strict=True):
            yield params, merged[threshold]

    def region_graph(self, params: Params, spec: RouteSpec) -> AffinityGraph:
        """The whole volume's region graph, solved at `params["threshold"]`."""
        return AffinityGraph(spec.offsets, spec.voxel_size, float(params["threshold"]))
