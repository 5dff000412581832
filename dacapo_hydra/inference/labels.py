"""Blockwise post-processing of a prediction into labels, out of core and resumable.

Each block reads the prediction over its region grown by a context (clipped to
the prediction), runs the task's `post_process` with one parameter set, and keeps
its own region. Thresholds and argmax need nothing more. Instance labels
(watershed from affinities or distances, connected components) take the two-pass
scheme DaCapo runs on daisy:

1. every block labels its region with ids offset per block (unique everywhere)
   and keeps, for each face, the ids it gave the first plane beyond the face (it
   sees that plane through its context) and its own ids on the face;
2. fragments of face-adjacent blocks are merged (union-find,
   :class:`scipy.cluster.hierarchy.DisjointSet`) where one block's view of the
   neighbour's plane agrees with the neighbour's own ids there, then every
   fragment gets a consecutive final id, block by block.

A fragment matches a neighbour's fragment when their overlap on the face is at
least `merge_fraction` of their union there: any overlap for connected components
(exact), half for watersheds, whose borders may shift by a voxel between two
blocks' views (one partner at most, so a split in one block and a merge in its
neighbour do not chain objects together). Every pass records finished blocks in a ledger,
so a rerun after a kill does only what is missing.

The size filter of instance routes (the parameter `min_size`) is not applied per
block, where an object cut by a block border would look small: blocks label
without it and save each fragment's voxel count, the merge sums the counts of
each final object across blocks, and objects under `min_size` get id 0 there.
Sizes are thus global and the filter gives the same result at any block size.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.cluster.hierarchy import DisjointSet
from scipy.ndimage import label as connected_components

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid, BlockLedger, run_blocks
from dacapo_hydra.inference.predict import (
    LEDGER_DIR,
    check_output,
    check_overwritable,
    open_output,
    remove_output,
)
from dacapo_hydra.inference.provenance import check_unchanged
from dacapo_hydra.tasks.base import Params, Task

log = logging.getLogger(__name__)

# Default block edge (voxels) when the prediction's chunks are smaller.
MIN_BLOCK = 64


def is_instance_task(task: Task) -> bool:
    """Whether the task's post-processing gives instance labels."""
    return bool(task.instances)


def block_params(params: Params) -> Params:
    """The parameters each block post-processes with: all but the global `min_size`."""
    return {k: v for k, v in params.items() if k != "min_size"}


@dataclass(frozen=True)
class Source:
    """A prediction array to post-process (an OME-NGFF group written by `predict`).

    Attributes:
        container: zarr container.
        dataset: the multiscale group.
        roi: world ROI it covers.
        voxel_size: nm per voxel.
        channels: channels of its leading channel axis.
        chunks: spatial chunk shape.
        value_range: for uint8 predictions, the range 0..255 stands for.

    """

    container: str
    dataset: str
    roi: Roi
    voxel_size: tuple[float, ...]
    channels: int
    chunks: tuple[int, ...]
    value_range: tuple[float, float] | None = None

    @classmethod
    def open(cls, container: str | Path, dataset: str) -> Source:
        """Describe an existing prediction (raises FileNotFoundError/KeyError/ValueError)."""
        array = ZarrArray.open(container, dataset)
        if array.num_channels is None:
            raise ValueError(
                f"{array.where}: a prediction has a leading channel axis; this array has none"
            )
        node = zarr.open_group(str(container), mode="r")[dataset]
        extra = node.attrs.asdict().get("dacapo", {}) if isinstance(node, zarr.Group) else {}
        value_range = None
        if array.dtype == np.uint8:
            value_range = tuple(float(v) for v in extra.get("value_range", (0.0, 1.0)))
        return cls(
            str(container),
            dataset,
            array.roi,
            array.voxel_size,
            int(array.num_channels),
            tuple(int(c) for c in array.array.chunks[1:]),
            value_range,
        )

    def array(self) -> ZarrArray:
        """The opened array."""
        return ZarrArray.open(self.container, self.dataset)

    def read(self, array: ZarrArray, roi: Roi) -> np.ndarray:
        """The prediction (C, *spatial) float32 in `roi`, uint8 scaled back to its range."""
        data = array.read(roi)
        if self.value_range is not None:
            lo, hi = self.value_range
            return (data.astype(np.float32) / 255 * (hi - lo) + lo).astype(np.float32)
        return data.astype(np.float32, copy=False)


def _voxels(roi: Roi, origin: Sequence[float], voxel_size: Sequence[float]) -> tuple[slice, ...]:
    """Voxel slices of `roi` relative to `origin`."""
    begin = np.round(np.subtract(roi.begin, origin) / voxel_size).astype(int)
    size = np.round(np.asarray(roi.shape) / voxel_size).astype(int)
    return tuple(slice(int(b), int(b + n)) for b, n in zip(begin, size, strict=True))


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz so that a kill leaves either the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class BlockLabeller:
    """Post-processes one block and writes its labels (or, for instances, fragments).

    Picklable, for Dask workers. For instances it also saves the block's fragment
    counts and face planes (see the module docstring) to `faces/<block>.npz`.

    Args:
        task: post-processes.
        params: the parameter set.
        source: the prediction.
        target: (container, array path) written: the labels' `s0`, or the fragments.
        grid: the blocks.
        instances: label instances (fragments + faces) instead of writing labels.
        connected_components: label the task's binary output's connected
            components per channel (instances of a semantic task).
        channel_axis: whether the task's output has a channel axis.
        channels: channels of the labels (1 without a channel axis).
        faces_dir: where instance blocks save their faces.

    """

    def __init__(
        self,
        task: Task,
        params: Params,
        source: Source,
        target: tuple[str, str],
        grid: BlockGrid,
        instances: bool,
        connected_components: bool,
        channel_axis: bool,
        channels: int,
        faces_dir: Path | None,
    ) -> None:
        self.task = task
        self.params = block_params(params) if instances else dict(params)
        self.source = source
        self.target = target
        self.grid = grid
        self.instances = instances
        self.connected_components = connected_components
        self.channel_axis = channel_axis
        self.channels = channels
        self.faces_dir = faces_dir
        self._arrays: tuple[ZarrArray, zarr.Array] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def _open(self) -> tuple[ZarrArray, zarr.Array]:
        if self._arrays is None:
            out = zarr.open_array(str(Path(self.target[0]) / self.target[1]), mode="r+")
            self._arrays = (self.source.array(), out)
        return self._arrays

    def labels(self, prediction: np.ndarray) -> np.ndarray:
        """The task's labels (C, *spatial) for a prediction (C, *spatial)."""
        labels = self.task.post_process(prediction, self.params)
        if not self.channel_axis:
            labels = labels[None]
        if self.connected_components:
            labels = np.stack([connected_components(c)[0] for c in labels]).astype(np.uint64)
        return labels

    def __call__(self, block: Block) -> int:
        """Label one block; returns the voxels written."""
        pred_array, out = self._open()
        vs = self.source.voxel_size
        read = block.read_roi.intersect(self.source.roi)
        labels = self.labels(self.source.read(pred_array, read))
        own = _voxels(block.write_roi, read.begin, vs)
        target = _voxels(block.write_roi, self.grid.roi.begin, vs)
        crop = labels[(slice(None), *own)]
        if not self.instances:
            if self.channel_axis:
                out[(slice(None), *target)] = crop
            else:
                out[target] = crop[0]
            return int(np.prod(crop.shape[1:]))
        fragments, views, counts, sizes = self._fragments(block, labels, own)
        out[(slice(None), *target)] = fragments
        faces = {"counts": counts, "sizes": sizes}
        for axis in range(self.grid.roi.dims):
            faces[f"own_lo_{axis}"] = np.take(fragments, 0, axis=axis + 1)
            faces[f"own_hi_{axis}"] = np.take(fragments, -1, axis=axis + 1)
            for side, view in views[axis].items():
                faces[f"view_{side}_{axis}"] = view
        _atomic_savez(self.faces_dir / f"{block.name}.npz", **faces)
        return int(np.prod(fragments.shape[1:]))

    def offset(self, block: Block, channel: int) -> int:
        """The id offset of a block's fragments in one channel (ids offset + 1..n)."""
        linear = int(np.ravel_multi_index(block.index, self.grid.shape))
        per_block = int(np.prod(np.round(np.divide(self.grid.block_size, self.source.voxel_size))))
        return (linear * self.channels + channel) * per_block

    def _fragments(
        self, block: Block, labels: np.ndarray, own: tuple[slice, ...]
    ) -> tuple[np.ndarray, list[dict[str, np.ndarray]], np.ndarray, np.ndarray]:
        """Global fragment ids of the block's region, its views beyond each face, counts, sizes.

        Sizes are the voxels of each fragment in the block's region, channel after
        channel, in the order of their ids.
        """
        fragments = np.zeros((labels.shape[0], *(s.stop - s.start for s in own)), np.uint64)
        views: list[dict[str, np.ndarray]] = [{} for _ in own]
        counts = np.zeros(labels.shape[0], np.int64)
        sizes = []
        for c, channel in enumerate(labels):
            crop = channel[own]
            ids, inverse = np.unique(crop, return_inverse=True)
            inverse = inverse.reshape(crop.shape)
            base = self.offset(block, c)
            start = 1 if ids[0] == 0 else 0
            if start:
                nonzero = inverse > 0
                fragments[c][nonzero] = base + inverse[nonzero].astype(np.uint64)
            else:
                fragments[c] = base + 1 + inverse.astype(np.uint64)
            kept = ids[start:]
            counts[c] = len(kept)
            sizes.append(np.bincount(inverse.ravel(), minlength=len(ids))[start:])
            for axis, s in enumerate(own):
                for side, position in (("lo", s.start - 1), ("hi", s.stop)):
                    if not 0 <= position < channel.shape[axis]:
                        continue
                    plane = np.take(channel, position, axis=axis)
                    plane = plane[tuple(o for i, o in enumerate(own) if i != axis)]
                    at = np.clip(np.searchsorted(kept, plane), 0, max(len(kept) - 1, 0))
                    known = (plane != 0) & (len(kept) > 0)
                    if len(kept):
                        known &= kept[at] == plane
                    view = np.where(known, base + 1 + at.astype(np.uint64), 0).astype(np.uint64)
                    if side not in views[axis]:
                        views[axis][side] = np.zeros((labels.shape[0], *view.shape), np.uint64)
                    views[axis][side][c] = view
        return fragments, views, counts, np.concatenate(sizes).astype(np.int64)


def _face_pairs(view: np.ndarray, own: np.ndarray, merge_fraction: float) -> np.ndarray:
    """Id pairs (view id, own id) that match on one face plane (see module docstring).

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


_MAPPINGS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _load_mapping(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fragment ids (sorted) and their final ids, cached per process (per Dask worker)."""
    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in _MAPPINGS:
        _MAPPINGS.clear()
        with np.load(path) as m:
            _MAPPINGS[key] = (m["ids"], m["final"])
    return _MAPPINGS[key]


class BlockRelabeller:
    """Second pass: maps one block's fragments to final ids and writes the labels.

    Args:
        fragments: (container, path) of the fragment array.
        output: (container, path) of the labels' `s0`.
        mapping: the `.npz` of fragment ids (`ids`, sorted) and their final ids (`final`).
        grid: the blocks.
        voxel_size: nm per voxel.
        channel_axis: whether the labels keep a channel axis.

    """

    def __init__(
        self,
        fragments: tuple[str, str],
        output: tuple[str, str],
        mapping: Path,
        grid: BlockGrid,
        voxel_size: tuple[float, ...],
        channel_axis: bool,
    ) -> None:
        self.fragments = fragments
        self.output = output
        self.mapping = mapping
        self.grid = grid
        self.voxel_size = voxel_size
        self.channel_axis = channel_axis

    def __call__(self, block: Block) -> int:
        """Relabel one block; returns the voxels written."""
        frag = zarr.open_array(str(Path(self.fragments[0]) / self.fragments[1]), mode="r")
        out = zarr.open_array(str(Path(self.output[0]) / self.output[1]), mode="r+")
        region = _voxels(block.write_roi, self.grid.roi.begin, self.voxel_size)
        ids = frag[(slice(None), *region)]
        table, final = _load_mapping(self.mapping)
        labels = np.zeros(ids.shape, np.uint64)
        nonzero = ids != 0
        labels[nonzero] = final[np.searchsorted(table, ids[nonzero])]
        if self.channel_axis:
            out[(slice(None), *region)] = labels
        else:
            out[region] = labels[0]
        return int(np.prod(ids.shape[1:]))


@dataclass
class LabelsResult:
    """Where the labels went, how many objects, how long it took."""

    container: str
    dataset: str
    roi: Roi
    voxel_size: tuple[float, ...]
    blocks: int
    instances: bool
    objects: int | None
    seconds: float


@dataclass
class LabelsJob:
    """A checked post-processing run; nothing has been written yet."""

    task: Task
    params: Params
    source: Source
    out_container: str
    out_dataset: str
    grid: BlockGrid
    instances: bool
    connected_components: bool
    channel_axis: bool
    channels: int
    dtype: np.dtype
    merge_fraction: float
    overwrite: bool = False

    @property
    def scratch(self) -> Path:
        """Ledgers and intermediate files of this output."""
        return Path(self.out_container) / LEDGER_DIR / self.out_dataset

    @property
    def write_shape(self) -> tuple[int, ...]:
        """Voxels per block (the labels' chunk shape)."""
        return tuple(
            int(round(b / v))
            for b, v in zip(self.grid.block_size, self.source.voxel_size, strict=True)
        )

    def _create(self, container: str, dataset: str, channels: int | None, dtype: Any) -> None:
        # Integer outputs (instances, masks, classes) are segmentations: label images.
        open_output(
            container,
            dataset,
            self.source.roi,
            self.source.voxel_size,
            channels,
            np.dtype(dtype).name,
            self.write_shape,
            {"post_process": {k: v for k, v in self.params.items()}},
            label=np.dtype(dtype).kind in "biu",
        )

    def run(self, workers: int = 1, scheduler: str | None = None, progress: bool = True) -> float:
        """Post-process every block not yet done; returns the objects (instances) or NaN."""
        channels = self.channels if self.channel_axis else None
        if self.overwrite:
            remove_output(self.out_container, self.out_dataset)
            self.overwrite = False  # once: a second run resumes what the first made
        self._create(self.out_container, self.out_dataset, channels, self.dtype)
        out_path = (self.out_container, f"{self.out_dataset}/s0")
        done = self.scratch / "complete"
        if done.exists():
            return float(json.loads(done.read_text())["objects"] if self.instances else "nan")
        if not self.instances:
            labeller = BlockLabeller(
                self.task,
                self.params,
                self.source,
                out_path,
                self.grid,
                False,
                self.connected_components,
                self.channel_axis,
                self.channels,
                None,
            )
            ledger = BlockLedger(self.scratch / "write")
            run_blocks(labeller, list(self.grid), ledger, workers, scheduler, "labels", progress)
            return float("nan")
        faces = self.scratch / "faces"
        faces.mkdir(parents=True, exist_ok=True)
        fragments = (str(self.scratch), "fragments.zarr")
        path = Path(fragments[0]) / fragments[1]
        shape = (self.channels, *(s for s in self._shape()))
        if not path.exists():
            zarr.create_array(
                str(path),
                shape=shape,
                chunks=(self.channels, *self.write_shape),
                dtype="uint64",
                fill_value=0,
            )
        labeller = BlockLabeller(
            self.task,
            self.params,
            self.source,
            fragments,
            self.grid,
            True,
            self.connected_components,
            self.channel_axis,
            self.channels,
            faces,
        )
        blocks = list(self.grid)
        run_blocks(
            labeller,
            blocks,
            BlockLedger(self.scratch / "fragments"),
            workers,
            scheduler,
            "fragments",
            progress,
        )
        objects = self._merge(labeller, faces)
        relabeller = BlockRelabeller(
            fragments,
            out_path,
            self.scratch / "mapping.npz",
            self.grid,
            self.source.voxel_size,
            self.channel_axis,
        )
        run_blocks(
            relabeller,
            blocks,
            BlockLedger(self.scratch / "relabel"),
            workers,
            scheduler,
            "relabel",
            progress,
        )
        done.write_text(json.dumps({"objects": objects}))
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(faces, ignore_errors=True)
        return float(objects)

    def _shape(self) -> tuple[int, ...]:
        return tuple(
            int(round(s / v))
            for s, v in zip(self.source.roi.shape, self.source.voxel_size, strict=True)
        )

    def _merge(self, labeller: BlockLabeller, faces: Path) -> int:
        """Union fragments across faces; save the final id of every fragment; count objects."""
        loaded: dict[str, Any] = {}

        def face(block: Block) -> Any:
            if block.name not in loaded:
                with np.load(faces / f"{block.name}.npz") as f:
                    loaded[block.name] = dict(f)
            return loaded[block.name]

        ids, sizes = [], []
        for block in self.grid:
            counts = face(block)["counts"]
            sizes.append(face(block)["sizes"])
            for c, n in enumerate(counts):
                base = labeller.offset(block, c)
                ids.append(np.arange(base + 1, base + 1 + int(n), dtype=np.uint64))
        table = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
        voxels = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        pairs = []
        for lower, upper, axis in self.grid.neighbours():
            lo, up = face(lower), face(upper)
            for c in range(self.channels):
                if f"view_hi_{axis}" in lo:
                    pairs.append(
                        _face_pairs(
                            lo[f"view_hi_{axis}"][c], up[f"own_lo_{axis}"][c], self.merge_fraction
                        )
                    )
                if f"view_lo_{axis}" in up:
                    pairs.append(
                        _face_pairs(
                            up[f"view_lo_{axis}"][c], lo[f"own_hi_{axis}"][c], self.merge_fraction
                        )
                    )
                if f"view_hi_{axis}" not in lo and f"view_lo_{axis}" not in up:
                    # No context on this axis: fragments touching across the face merge.
                    pairs.append(_face_pairs(lo[f"own_hi_{axis}"][c], up[f"own_lo_{axis}"][c], 0.0))
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
        object_sizes = np.bincount(
            objects, weights=voxels, minlength=int(objects.max(initial=-1)) + 1
        )
        survive = object_sizes >= max(1, int(self.params.get("min_size", 0)))
        new_ids = np.zeros(survive.size, np.uint64)
        new_ids[survive] = np.arange(1, int(survive.sum()) + 1, dtype=np.uint64)
        final = new_ids[objects]
        _atomic_savez(self.scratch / "mapping.npz", ids=table, final=final)
        return int(survive.sum())


def plan_labels(
    task: Task,
    params: Params,
    source: Source,
    out_container: str | Path,
    out_dataset: str,
    block_shape: Sequence[int] | None = None,
    context: Sequence[int] | None = None,
    connected_components: bool = False,
    merge_fraction: float | None = None,
    overwrite: bool = False,
) -> LabelsJob:
    """Check a post-processing run and plan its blocks; writes nothing.

    Args:
        task: the run's task (its `post_process`).
        params: the parameter set (e.g. the best one validation found).
        source: the prediction.
        out_container: labels container.
        out_dataset: labels group; the array is `<out_dataset>/s0`. Integer labels are
            written as an OME-Zarr label image; at `<image>/labels/<name>` (e.g.
            `prediction/labels/labels`) they are listed among that image's labels.
        block_shape: voxels per block, a multiple of the prediction's chunks
            (default: the smallest multiple of at least 64 voxels).
        context: voxels read beyond each block per side (default for instances: a
            quarter of the block or four typical object radii, whichever is more, at
            most a block; 0 otherwise).
        connected_components: label connected components of a binary output.
        merge_fraction: face IoU that merges fragments (default: any overlap for
            connected components, 0.5 for watersheds).
        overwrite: replace an existing output instead of resuming it (an output
            resumes only if made with the same parameters).

    Raises:
        ValueError: naming a block shape, a parameter set or an output that does not fit.

    """
    dims = source.roi.dims
    if block_shape is None:
        block = tuple(c * max(1, -(-MIN_BLOCK // c)) for c in source.chunks)
    else:
        block = tuple(int(b) for b in block_shape)
        if len(block) != dims or any(
            b <= 0 or b % c for b, c in zip(block, source.chunks, strict=True)
        ):
            raise ValueError(
                f"block_shape {list(block_shape)} must be {dims} positive multiples of the "
                f"prediction's chunks {list(source.chunks)}"
            )
    instances = connected_components or is_instance_task(task)
    if context is None:
        # Instance routes see the objects around the block's faces: at least a quarter
        # block and four typical object radii (at most a block), so that seeds and
        # distance transforms there are, as far as can be, a whole-volume pass's.
        radius = task.object_radius or 0.0
        margin = (
            tuple(
                max(b // 4, min(b, math.ceil(4 * radius / v)))
                for b, v in zip(block, source.voxel_size, strict=True)
            )
            if instances
            else (0,) * dims
        )
    else:
        margin = tuple(int(c) for c in context)
        if len(margin) != dims or any(c < 0 for c in margin):
            raise ValueError(f"context {list(context)} must be {dims} voxel counts >= 0")
    shape = tuple(
        min(b + 2 * m, int(round(s / v)))
        for b, m, s, v in zip(block, margin, source.roi.shape, source.voxel_size, strict=True)
    )
    try:
        probe = task.post_process(np.zeros((source.channels, *shape), np.float32), params)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"post-processing parameters {dict(params)} do not fit {type(task).__name__} "
            f"with {source.channels} prediction channels: {err}"
        ) from None
    channel_axis = probe.ndim == dims + 1
    channels = probe.shape[0] if channel_axis else 1
    if connected_components and probe.dtype.kind not in "biu":
        raise ValueError(
            f"connected components need a binary output; {type(task).__name__} post-processing "
            f"gives {probe.dtype}"
        )
    dtype = np.dtype(np.uint64) if instances else probe.dtype
    if dtype.kind == "b":
        dtype = np.dtype(np.uint8)
    full = tuple(
        int(round(s / v)) for s, v in zip(source.roi.shape, source.voxel_size, strict=True)
    )
    if overwrite:
        check_overwritable(out_container, out_dataset)
    elif check_output(
        out_container,
        out_dataset,
        (channels, *full) if channel_axis else full,
        dtype,
        (channels, *block) if channel_axis else block,
        source.voxel_size,
        source.roi.begin,
    ):
        # The record the labels' group was created with (:meth:`LabelsJob._create`).
        check_unchanged(out_container, out_dataset, "post_process", dict(params))
    grid = BlockGrid(
        source.roi,
        tuple(b * v for b, v in zip(block, source.voxel_size, strict=True)),
        tuple(m * v for m, v in zip(margin, source.voxel_size, strict=True)),
    )
    if merge_fraction is None:
        merge_fraction = 1e-9 if connected_components else 0.5
    return LabelsJob(
        task,
        dict(params),
        source,
        str(out_container),
        out_dataset,
        grid,
        instances,
        connected_components,
        channel_axis,
        channels,
        dtype,
        merge_fraction,
        overwrite,
    )


def post_process_blockwise(
    task: Task,
    params: Params,
    pred_container: str | Path,
    pred_dataset: str,
    out_container: str | Path,
    out_dataset: str,
    block_shape: Sequence[int] | None = None,
    context: Sequence[int] | None = None,
    connected_components: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> LabelsResult:
    """Post-process a prediction blockwise into an OME-Zarr label image.

    Arguments as :func:`plan_labels`; `workers`/`scheduler` as
    :func:`~dacapo_hydra.inference.blocks.run_blocks`.
    """
    import time

    started = time.perf_counter()
    job = plan_labels(
        task,
        params,
        Source.open(pred_container, pred_dataset),
        out_container,
        out_dataset,
        block_shape,
        context,
        connected_components,
        overwrite=overwrite,
    )
    objects = job.run(workers, scheduler, progress)
    return LabelsResult(
        job.out_container,
        job.out_dataset,
        job.source.roi,
        job.source.voxel_size,
        len(job.grid),
        job.instances,
        None if np.isnan(objects) else int(objects),
        time.perf_counter() - started,
    )
