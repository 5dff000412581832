"""Post-processing block by block: the first pass of blockwise labels.

A :class:`Source` is the prediction read; a :class:`LabelsPlan` says what every
block does with it (made by :func:`~dacapo_hydra.inference.labels.plan_labels`); a
:class:`BlockLabeller` does one block: it runs the task's `post_process` on the
block's region grown by its context and writes its own region, either the labels
themselves or, for instances, fragments with ids unique across blocks (offset per
block), the block's rows of the region graph (:mod:`~dacapo_hydra.inference.graph`)
and its views of the planes beyond its faces, which
:mod:`~dacapo_hydra.inference.faces` turns into the edges across faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.ndimage import find_objects
from scipy.ndimage import label as connected_components

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.ome import parse_multiscale
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid, BlockResult, BlockWorker
from dacapo_hydra.inference.encoding import decode_uint8
from dacapo_hydra.inference.graph import table
from dacapo_hydra.tasks.base import Params, Task


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
        levels: the prediction image's scale levels (its label images get as many).

    """

    container: str
    dataset: str
    roi: Roi
    voxel_size: tuple[float, ...]
    channels: int
    chunks: tuple[int, ...]
    value_range: tuple[float, float] | None = None
    levels: int = 1

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
        ms = (
            parse_multiscale(node.attrs.asdict(), array.where)
            if isinstance(node, zarr.Group)
            else None
        )
        return cls(
            str(container),
            dataset,
            array.roi,
            array.voxel_size,
            int(array.num_channels),
            tuple(int(c) for c in array.array.chunks[1:]),
            value_range,
            len(ms.levels) if ms is not None else 1,
        )

    def array(self) -> ZarrArray:
        """The opened array."""
        return ZarrArray.open(self.container, self.dataset)

    def read(self, array: ZarrArray, roi: Roi) -> np.ndarray:
        """The prediction (C, *spatial) float32 in `roi`, uint8 scaled back to its range."""
        data = array.read(roi)
        if self.value_range is not None:
            return decode_uint8(data, self.value_range)
        return data.astype(np.float32, copy=False)


@dataclass(frozen=True)
class LabelsPlan:
    """What post-processing does in every block of a grid.

    Attributes:
        task: post-processes.
        params: the parameter set (the global `min_size` included).
        source: the prediction.
        grid: the blocks.
        instances: label instances (fragments + region graph, solved globally)
            instead of writing each block's labels.
        connected_components: label the task's binary output's connected
            components per channel (instances of a semantic task).
        channel_axis: whether the task's output has a channel axis.
        channels: channels of the labels (1 without a channel axis).
        dtype: the labels' dtype.
        merge_fraction: face IoU that merges fragments of neighbouring blocks.
        route: the region graph the route of `params` merges on
            (:meth:`~dacapo_hydra.tasks.instances.route.Route.region_graph`, via the
            task's `graph_route`; None: segment per block and match across faces).

    """

    task: Task
    params: Params
    source: Source
    grid: BlockGrid
    instances: bool
    connected_components: bool
    channel_axis: bool
    channels: int
    dtype: np.dtype
    merge_fraction: float
    route: Any = None

    @property
    def write_shape(self) -> tuple[int, ...]:
        """Voxels per block (the labels' chunk shape)."""
        return Roi(self.grid.roi.begin, self.grid.block_size).voxel_shape(self.source.voxel_size)

    @property
    def shape(self) -> tuple[int, ...]:
        """Voxels of the whole volume."""
        return self.grid.roi.voxel_shape(self.source.voxel_size)

    @property
    def context(self) -> tuple[int, ...]:
        """Voxels each block reads beyond its faces."""
        return tuple(
            round(c / v) for c, v in zip(self.grid.context, self.source.voxel_size, strict=True)
        )

    def view_axes(self) -> list[int]:
        """Axes whose faces are matched by the blocks' views of the plane beyond.

        Watershed routes with context on that axis; connected components are exact
        without (touching is merging), and a region-graph route merges by its edges.
        """
        if self.connected_components or self.route is not None:
            return []
        return [a for a, c in enumerate(self.context) if c > 0]

    def offset(self, block: Block, channel: int) -> int:
        """The id offset of a block's fragments in one channel (ids offset + 1..n)."""
        return (self.grid.linear(block) * self.channels + channel) * self.ids_per_block

    @property
    def ids_per_block(self) -> int:
        """Ids reserved per block and channel: its voxels."""
        return int(np.prod(self.write_shape))

    def block_of(self, ids: np.ndarray) -> np.ndarray:
        """The C-order position of the block each fragment id (> 0) belongs to."""
        return ((ids.astype(np.int64) - 1) // self.ids_per_block) // self.channels


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted ids of `labels` and each voxel's index among them (`np.unique`'s pair).

    Segmentations number their objects 1..n (or nearly): a histogram and a lookup
    table do in one linear pass what `np.unique`'s sort does in n log n.
    """
    top = int(labels.max(initial=0))
    if top > 4 * labels.size:
        ids, inverse = np.unique(labels, return_inverse=True)
        return ids, inverse.reshape(labels.shape)
    present = np.bincount(labels.ravel().astype(np.intp), minlength=top + 1) > 0
    ids = np.flatnonzero(present)
    table = np.cumsum(present) - 1
    return ids.astype(labels.dtype), table[labels.astype(np.intp)]


def views_path(scratch: Path, side: str, axis: int) -> Path:
    """The array of the planes blocks see beyond their `side` face along `axis`."""
    return scratch / "views.zarr" / f"{side}_{axis}"


def create_views(plan: LabelsPlan, scratch: Path) -> None:
    """Arrays for the blocks' views beyond their faces (one chunk per block face).

    `hi_<axis>[:, i]` holds what block i along `axis` saw of the first plane of
    block i + 1; `lo_<axis>[:, i]` what block i + 1 saw of the last plane of block i.
    Each chunk has one writer, so blocks write them in parallel without locks.
    """
    for axis in plan.view_axes():
        faces = plan.grid.shape[axis] - 1
        if faces < 1:
            continue
        shape = tuple(s for a, s in enumerate(plan.shape) if a != axis)
        chunks = tuple(s for a, s in enumerate(plan.write_shape) if a != axis)
        for side in ("lo", "hi"):
            path = views_path(scratch, side, axis)
            if not path.exists():
                zarr.create_array(
                    str(path),
                    shape=(plan.channels, faces, *shape),
                    chunks=(plan.channels, 1, *chunks),
                    dtype="uint64",
                    fill_value=0,
                )


def nodes_table(
    plan: LabelsPlan, block: Block, fragments: np.ndarray, counts: np.ndarray
) -> dict[str, np.ndarray]:
    """One row per fragment of a block: id, block, voxels, bounding box and centroid.

    Args:
        plan: the labelling's plan.
        block: the block.
        fragments: (C, *block) global ids.
        counts: fragments per channel (ids offset + 1..count).

    """
    begin = block.write_roi.to_slices(plan.grid.roi.begin, plan.source.voxel_size)
    corner = np.array([s.start for s in begin])
    coords = np.indices(fragments.shape[1:]).reshape(len(corner), -1)
    rows: dict[str, list[np.ndarray]] = {}
    for c, n in enumerate(counts):
        base = plan.offset(block, c)
        local = fragments[c].ravel().astype(np.int64)
        local = np.where(local > 0, local - base, 0)
        voxels = np.bincount(local, minlength=n + 1)[1:]
        present = voxels > 0
        columns = {
            "id": (base + 1 + np.arange(n, dtype=np.uint64))[present],
            "block": np.full(int(present.sum()), plan.grid.linear(block), np.int64),
            "voxels": voxels[present].astype(np.int64),
        }
        boxes = [b for b in find_objects(local.reshape(fragments.shape[1:])) if b is not None]
        for axis in range(len(corner)):
            centre = np.bincount(local, weights=coords[axis], minlength=n + 1)[1:][present]
            columns[f"centroid_{axis}"] = centre / voxels[present] + corner[axis]
            columns[f"bbox_min_{axis}"] = (
                np.array([b[axis].start for b in boxes], np.int64) + corner[axis]
            )
            columns[f"bbox_max_{axis}"] = (
                np.array([b[axis].stop for b in boxes], np.int64) + corner[axis]
            )
        for k, v in columns.items():
            rows.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in rows.items()}


class BlockLabeller(BlockWorker[tuple[ZarrArray, zarr.Array]]):
    """Post-processes one block and writes its labels (or, for instances, fragments).

    Picklable, for Dask workers. For instances it returns the block's region-graph
    rows (its fragments; for a region-graph route, the edges inside it) and writes
    its views beyond its faces (see :func:`create_views`).

    Args:
        plan: what every block does.
        target: (container, array path) written: the labels' `s0`, or the fragments.
        scratch: the labelling's scratch folder (views).

    """

    def __init__(self, plan: LabelsPlan, target: tuple[str, str], scratch: Path | None) -> None:
        self.plan = plan
        self.target = target
        self.scratch = scratch
        # Blocks label without the global size filter: an object cut by a face looks small.
        self.params = block_params(plan.params) if plan.instances else dict(plan.params)

    def open(self) -> tuple[ZarrArray, zarr.Array]:
        """The prediction and the array written."""
        out = zarr.open_array(str(Path(self.target[0]) / self.target[1]), mode="r+")
        return self.plan.source.array(), out

    def labels(self, prediction: np.ndarray) -> np.ndarray:
        """The task's labels (C, *spatial) for a prediction (C, *spatial)."""
        if self.plan.route is not None:
            return self.plan.route.fragments(prediction)[None]
        labels = self.plan.task.post_process(prediction, self.params)
        if not self.plan.channel_axis:
            labels = labels[None]
        if self.plan.connected_components:
            labels = np.stack([connected_components(c)[0] for c in labels]).astype(np.uint64)
        return labels

    def __call__(self, block: Block) -> int | BlockResult:
        """Label one block; returns the voxels written (and, for instances, graph rows)."""
        pred_array, out = self.opened
        plan = self.plan
        vs = plan.source.voxel_size
        read = block.read_roi.intersect(plan.source.roi)
        prediction = plan.source.read(pred_array, read)
        labels = self.labels(prediction)
        own = block.write_roi.to_slices(read.begin, vs)
        target = block.write_roi.to_slices(plan.grid.roi.begin, vs)
        crop = labels[(slice(None), *own)]
        if not plan.instances:
            if plan.channel_axis:
                out[(slice(None), *target)] = crop
            else:
                out[target] = crop[0]
            return int(np.prod(crop.shape[1:]))
        fragments, views, counts = self._fragments(block, labels, own)
        out[(slice(None), *target)] = fragments
        self._write_views(block, views)
        tables = {"nodes": table(nodes_table(plan, block, fragments, counts))}
        if plan.route is not None:
            edges = plan.route.edges(fragments[0], prediction[(slice(None), *own)])
            n = edges["u"].size
            edges["face"] = np.full(n, -1, np.int8)
            edges["matched"] = np.zeros(n, bool)
            tables["edges"] = table(edges)
        return BlockResult(int(np.prod(fragments.shape[1:])), tables)

    def _write_views(self, block: Block, views: list[dict[str, np.ndarray]]) -> None:
        """Save the block's views beyond its faces where faces are matched by views."""
        plan = self.plan
        region = block.write_roi.to_slices(plan.grid.roi.begin, plan.source.voxel_size)
        for axis in plan.view_axes():
            other = tuple(s for a, s in enumerate(region) if a != axis)
            i = block.index[axis]
            for side, face in (("hi", i), ("lo", i - 1)):
                if side in views[axis] and 0 <= face < plan.grid.shape[axis] - 1:
                    path = views_path(self.scratch, side, axis)
                    array = zarr.open_array(str(path), mode="r+")
                    array[(slice(None), face, *other)] = views[axis][side]

    def _fragments(
        self, block: Block, labels: np.ndarray, own: tuple[slice, ...]
    ) -> tuple[np.ndarray, list[dict[str, np.ndarray]], np.ndarray]:
        """Global fragment ids of the block's region, its views beyond each face, counts."""
        fragments = np.zeros((labels.shape[0], *(s.stop - s.start for s in own)), np.uint64)
        views: list[dict[str, np.ndarray]] = [{} for _ in own]
        counts = np.zeros(labels.shape[0], np.int64)
        for c, channel in enumerate(labels):
            crop = channel[own]
            ids, inverse = _compact(crop)
            base = self.plan.offset(block, c)
            start = 1 if ids[0] == 0 else 0
            if start:
                nonzero = inverse > 0
                fragments[c][nonzero] = base + inverse[nonzero].astype(np.uint64)
            else:
                fragments[c] = base + 1 + inverse.astype(np.uint64)
            kept = ids[start:]
            counts[c] = len(kept)
            for axis, s in enumerate(own):
                if axis not in self.plan.view_axes():
                    continue
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
        return fragments, views, counts
