"""The region graph across block faces: the second pass of blockwise instance labels.

For a block and each axis along which it has a lower neighbour, a
:class:`FaceEdges` worker reads the two planes that meet at their shared face from
the fragments (the neighbour's last, the block's first) and returns one edge row
per pair of fragments that touch there (:func:`~dacapo_hydra.inference.graph.edge_stats`),
so that the driver never reads a face. Whether the pair merges is decided here for
the routes that segment per block:

- connected components: touching is merging, exactly as in a whole-volume pass;
- watersheds with context: a pair matches where one block's view of the other's
  plane (:func:`~dacapo_hydra.inference.fragments.create_views`) overlaps the
  other's own fragment by at least `merge_fraction` of their union (IoU), seen from
  either side: a watershed's borders may move by a voxel between two blocks' views,
  and with a fraction of 0.5 or more a fragment matches one partner at most, so a
  split in one block and a merge in its neighbour do not chain objects together;
- a region-graph route (agglomeration) leaves `matched` false and adds the boundary
  affinities of the pair (the nearest-neighbour channel across the face), for the
  global solve to threshold together with the edges inside blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockResult, BlockWorker
from dacapo_hydra.inference.fragments import LabelsPlan, views_path
from dacapo_hydra.inference.graph import edge_stats, table


def face_pairs(view: np.ndarray, own: np.ndarray, merge_fraction: float) -> np.ndarray:
    """Id pairs (view id, own id) that match on one face plane (see the module docstring).

    With a `merge_fraction` above 0 (watersheds) a pair matches when its overlap on the
    plane is at least that fraction of the union of the two (IoU). With 0 any overlap
    matches.

    Examples:
        >>> view = np.array([[7, 7, 7, 0]], np.uint64)
        >>> own = np.array([[3, 3, 4, 4]], np.uint64)
        >>> face_pairs(view, own, 0.5).tolist()
        [[7, 3]]

    """
    both = (view != 0) & (own != 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64)
    pairs, overlap = np.unique(
        np.stack([view[both], own[both]], axis=1), axis=0, return_counts=True
    )
    view_ids, view_area = np.unique(view[view != 0], return_counts=True)
    own_ids, own_area = np.unique(own[own != 0], return_counts=True)
    a = view_area[np.searchsorted(view_ids, pairs[:, 0])]
    b = own_area[np.searchsorted(own_ids, pairs[:, 1])]
    return pairs[overlap >= merge_fraction * (a + b - overlap)]


class FaceEdges(BlockWorker[tuple[zarr.Array, ZarrArray | None]]):
    """The edges across the lower faces of one block (see the module docstring).

    Args:
        plan: the labelling's plan.
        fragments: (container, path) of the fragment array.
        scratch: the labelling's scratch folder (views).

    """

    def __init__(self, plan: LabelsPlan, fragments: tuple[str, str], scratch: Path) -> None:
        self.plan = plan
        self.fragments = fragments
        self.scratch = scratch

    def open(self) -> tuple[zarr.Array, ZarrArray | None]:
        """The fragments, and the prediction for a route that weighs edges by affinities."""
        frag = zarr.open_array(str(Path(self.fragments[0]) / self.fragments[1]), mode="r")
        return frag, self.plan.source.array() if self.plan.route is not None else None

    def __call__(self, block: Block) -> BlockResult:
        """Edge rows across each lower face of `block` that has a neighbour."""
        plan = self.plan
        region = block.write_roi.to_slices(plan.grid.roi.begin, plan.source.voxel_size)
        rows: list[dict[str, np.ndarray]] = []
        # The block's voxels, so that the pass's voxels per second compare with the others'.
        voxels = int(np.prod([r.stop - r.start for r in region]))
        for axis, s in enumerate(region):
            if block.index[axis] == 0:
                continue
            lo = self._plane(region, axis, s.start - 1)
            hi = self._plane(region, axis, s.start)
            for c in range(plan.channels):
                rows.append(self._edges(block, axis, region, lo[c], hi[c], c))
        columns = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]} if rows else {}
        return BlockResult(voxels, {"edges": table(columns)} if columns else {})

    def _plane(self, region: tuple[slice, ...], axis: int, position: int) -> np.ndarray:
        """Fragments (C, *face) of one plane across `axis`, within the block's other extents."""
        index = tuple(
            slice(position, position + 1) if a == axis else s for a, s in enumerate(region)
        )
        return np.take(self.opened[0][(slice(None), *index)], 0, axis=axis + 1)

    def _affinities(self, region: tuple[slice, ...], axis: int) -> np.ndarray | None:
        """The affinity across the face at each of its voxel pairs (route channel), or None."""
        route = self.plan.route
        if route is None or axis not in route.face_channels():
            return None
        channel, step = route.face_channels()[axis]
        # Channel value at x links x and x + step: the pair (last lo, first hi) is read
        # at the hi plane for a step of -1, at the lo plane for +1.
        position = region[axis].start if step < 0 else region[axis].start - 1
        vs = self.plan.source.voxel_size
        begin = [
            self.plan.grid.roi.begin[a] + (position if a == axis else s.start) * v
            for a, (s, v) in enumerate(zip(region, vs, strict=True))
        ]
        shape = [
            v if a == axis else (s.stop - s.start) * v
            for a, (s, v) in enumerate(zip(region, vs, strict=True))
        ]
        data = self.plan.source.read(self.opened[1], Roi(tuple(begin), tuple(shape)))
        return np.take(data[channel], 0, axis=axis)

    def _edges(
        self,
        block: Block,
        axis: int,
        region: tuple[slice, ...],
        lo: np.ndarray,
        hi: np.ndarray,
        channel: int,
    ) -> dict[str, np.ndarray]:
        """Rows for the pairs touching across one face in one channel."""
        plan = self.plan
        both = (lo != 0) & (hi != 0)
        values = self._affinities(region, axis)
        rows = edge_stats(lo[both], hi[both], None if values is None else values[both])
        matched = np.zeros(rows["u"].size, bool)
        if plan.connected_components or (plan.route is None and axis not in plan.view_axes()):
            matched[:] = True  # touching is merging (exact for connected components)
        elif plan.route is None:
            face = block.index[axis] - 1
            other = tuple(s for a, s in enumerate(region) if a != axis)
            pairs = []
            for side, own in (("hi", hi), ("lo", lo)):
                view = zarr.open_array(str(views_path(self.scratch, side, axis)), mode="r")
                seen = view[(slice(channel, channel + 1), face, *other)][0]
                pairs.append(face_pairs(seen, own, plan.merge_fraction))
            found = np.concatenate(pairs)
            found = np.unique(np.sort(found, axis=1), axis=0)
            rows, matched = _with_matches(rows, found)
        rows["face"] = np.full(rows["u"].size, axis, np.int8)
        rows["matched"] = matched
        return rows


def _with_matches(
    rows: dict[str, np.ndarray], found: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Touching rows plus matched pairs that do not touch on the own planes; the flags."""
    touching = np.stack([rows["u"], rows["v"]], axis=1).astype(np.uint64)
    pairs, inverse = np.unique(np.concatenate([touching, found]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    touches = np.zeros(len(pairs), bool)
    touches[inverse[: len(touching)]] = True
    matches = np.zeros(len(pairs), bool)
    matches[inverse[len(touching) :]] = True
    extra = pairs[matches & ~touches]
    if len(extra):
        add = {"u": extra[:, 0], "v": extra[:, 1]}
        for k, column in rows.items():
            if k not in add:
                fill = 0 if column.dtype.kind in "iu" else np.nan
                add[k] = np.full(len(extra), fill, column.dtype)
        rows = {k: np.concatenate([rows[k], add[k]]) for k in rows}
    return rows, np.concatenate([matches[inverse[: len(touching)]], np.ones(len(extra), bool)])
