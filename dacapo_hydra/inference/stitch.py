"""Stitching blockwise instances: the second pass of blockwise labels.

Fragments of face-adjacent blocks (:mod:`~dacapo_hydra.inference.fragments`) are
merged where one block's view of the neighbour's plane agrees with the
neighbour's own ids there (:func:`face_pairs`): a fragment matches a neighbour's
fragment when their overlap on the face is at least `merge_fraction` of their union
there, any overlap for connected components (exact), half for watersheds, whose
borders may shift by a voxel between two blocks' views (one partner at most, so a
split in one block and a merge in its neighbour do not chain objects together).
:func:`merge_fragments` joins matches with union-find
(:class:`scipy.cluster.hierarchy.DisjointSet`), applies the global size filter
and saves every fragment's final id; :class:`BlockRelabeller` writes each block's
labels with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.cluster.hierarchy import DisjointSet

from dacapo_hydra.data.output import save_npz
from dacapo_hydra.inference.blocks import Block, BlockWorker
from dacapo_hydra.inference.fragments import LabelsPlan


def face_pairs(view: np.ndarray, own: np.ndarray, merge_fraction: float) -> np.ndarray:
    """Id pairs (view id, own id) that match on one face plane (see the module docstring).

    With a `merge_fraction` above 0 (watersheds) a pair matches when its overlap on the
    plane is at least that fraction of the union of the two (IoU), so a fragment
    matches at most one fragment for fractions of 0.5 and more: two objects one block
    splits and its neighbour merges are not chained into one. With 0 (connected
    components, exact) any overlap matches.
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


def _matches(lo: dict[str, Any], up: dict[str, Any], axis: int, plan: LabelsPlan) -> list:
    """Fragment id pairs that match across the face `axis` of two neighbours' faces."""
    pairs = []
    for c in range(plan.channels):
        if f"view_hi_{axis}" in lo:
            view, own = lo[f"view_hi_{axis}"][c], up[f"own_lo_{axis}"][c]
            pairs.append(face_pairs(view, own, plan.merge_fraction))
        if f"view_lo_{axis}" in up:
            view, own = up[f"view_lo_{axis}"][c], lo[f"own_hi_{axis}"][c]
            pairs.append(face_pairs(view, own, plan.merge_fraction))
        if f"view_hi_{axis}" not in lo and f"view_lo_{axis}" not in up:
            # No context on this axis: fragments touching across the face merge.
            pairs.append(face_pairs(lo[f"own_hi_{axis}"][c], up[f"own_lo_{axis}"][c], 0.0))
    return pairs


def merge_fragments(plan: LabelsPlan, faces: Path, mapping: Path) -> int:
    """Union fragments across faces; save the final id of every fragment; count objects.

    Args:
        plan: the labelling's plan (grid, channels, `merge_fraction`, `min_size`).
        faces: the folder of each block's faces (`<block>.npz`).
        mapping: the `.npz` written: fragment ids (`ids`, sorted) and final ids (`final`).

    Returns:
        The objects left after the size filter (final ids 1..n).

    """
    loaded: dict[str, Any] = {}

    def face(block: Block) -> Any:
        if block.name not in loaded:
            with np.load(faces / f"{block.name}.npz") as f:
                loaded[block.name] = dict(f)
        return loaded[block.name]

    ids, sizes = [], []
    for block in plan.grid:
        sizes.append(face(block)["sizes"])
        for c, n in enumerate(face(block)["counts"]):
            base = plan.offset(block, c)
            ids.append(np.arange(base + 1, base + 1 + int(n), dtype=np.uint64))
    table = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    voxels = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    pairs = []
    for lower, upper, axis in plan.grid.neighbours():
        pairs += _matches(face(lower), face(upper), axis, plan)
        loaded.pop(lower.name, None)
    merged = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)
    roots = table.copy()
    if len(merged):
        sets = DisjointSet(np.unique(merged).tolist())
        for a, b in merged.tolist():
            sets.merge(a, b)
        members = np.unique(merged)
        at = np.searchsorted(table, members)
        roots[at] = [sets[int(m)] for m in members.tolist()]
    _, objects = np.unique(roots, return_inverse=True)
    objects = objects.ravel()
    # The global size filter: voxels summed over every fragment of an object.
    object_sizes = np.bincount(objects, weights=voxels, minlength=int(objects.max(initial=-1)) + 1)
    survive = object_sizes >= max(1, int(plan.params.get("min_size", 0)))
    new_ids = np.zeros(survive.size, np.uint64)
    new_ids[survive] = np.arange(1, int(survive.sum()) + 1, dtype=np.uint64)
    save_npz(mapping, ids=table, final=new_ids[objects])
    return int(survive.sum())


_MAPPINGS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _load_mapping(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fragment ids (sorted) and their final ids, cached per process (per Dask worker)."""
    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in _MAPPINGS:
        _MAPPINGS.clear()
        with np.load(path) as m:
            _MAPPINGS[key] = (m["ids"], m["final"])
    return _MAPPINGS[key]


class BlockRelabeller(BlockWorker[tuple[zarr.Array, zarr.Array]]):
    """Second pass: maps one block's fragments to final ids and writes the labels.

    Args:
        plan: the labelling's plan (grid, voxel size, channel axis).
        fragments: (container, path) of the fragment array.
        output: (container, path) of the labels' `s0`.
        mapping: the `.npz` of fragment ids (`ids`, sorted) and their final ids (`final`).

    """

    def __init__(
        self, plan: LabelsPlan, fragments: tuple[str, str], output: tuple[str, str], mapping: Path
    ) -> None:
        self.plan = plan
        self.fragments = fragments
        self.output = output
        self.mapping = mapping

    def open(self) -> tuple[zarr.Array, zarr.Array]:
        """The fragments and the labels' `s0`."""
        frag = zarr.open_array(str(Path(self.fragments[0]) / self.fragments[1]), mode="r")
        return frag, zarr.open_array(str(Path(self.output[0]) / self.output[1]), mode="r+")

    def __call__(self, block: Block) -> int:
        """Relabel one block; returns the voxels written."""
        frag, out = self.opened
        region = block.write_roi.to_slices(self.plan.grid.roi.begin, self.plan.source.voxel_size)
        ids = frag[(slice(None), *region)]
        table, final = _load_mapping(self.mapping)
        labels = np.zeros(ids.shape, np.uint64)
        nonzero = ids != 0
        labels[nonzero] = final[np.searchsorted(table, ids[nonzero])]
        if self.plan.channel_axis:
            out[(slice(None), *region)] = labels
        else:
            out[region] = labels[0]
        return int(np.prod(ids.shape[1:]))
