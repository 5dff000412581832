"""Post-processing block by block: the first pass of blockwise labels.

A :class:`Source` is the prediction read; a :class:`LabelsPlan` says what every
block does with it (made by :func:`~dacapo_hydra.inference.labels.plan_labels`); a
:class:`BlockLabeller` does one block: it runs the task's `post_process` on the
block's region grown by its context and writes its own region, either the labels
themselves or, for instances, fragments with ids unique across blocks and the
block's faces (its ids on each face, its view of the plane beyond, each
fragment's size) for :mod:`~dacapo_hydra.inference.stitch` to merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from scipy.ndimage import label as connected_components

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.output import save_npz
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid, BlockWorker
from dacapo_hydra.inference.encoding import decode_uint8
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
        instances: label instances (fragments + faces, then stitched) instead of
            writing each block's labels.
        connected_components: label the task's binary output's connected
            components per channel (instances of a semantic task).
        channel_axis: whether the task's output has a channel axis.
        channels: channels of the labels (1 without a channel axis).
        dtype: the labels' dtype.
        merge_fraction: face IoU that merges fragments of neighbouring blocks.

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

    @property
    def write_shape(self) -> tuple[int, ...]:
        """Voxels per block (the labels' chunk shape)."""
        return Roi(self.grid.roi.begin, self.grid.block_size).voxel_shape(self.source.voxel_size)

    def offset(self, block: Block, channel: int) -> int:
        """The id offset of a block's fragments in one channel (ids offset + 1..n)."""
        linear = int(np.ravel_multi_index(block.index, self.grid.shape))
        per_block = int(np.prod(self.write_shape))
        return (linear * self.channels + channel) * per_block


class BlockLabeller(BlockWorker[tuple[ZarrArray, zarr.Array]]):
    """Post-processes one block and writes its labels (or, for instances, fragments).

    Picklable, for Dask workers. For instances it also saves the block's fragment
    counts and face planes (see :mod:`~dacapo_hydra.inference.labels`) to
    `<faces_dir>/<block>.npz`.

    Args:
        plan: what every block does.
        target: (container, array path) written: the labels' `s0`, or the fragments.
        faces_dir: where instance blocks save their faces.

    """

    def __init__(self, plan: LabelsPlan, target: tuple[str, str], faces_dir: Path | None) -> None:
        self.plan = plan
        self.target = target
        self.faces_dir = faces_dir
        # Blocks label without the global size filter: an object cut by a face looks small.
        self.params = block_params(plan.params) if plan.instances else dict(plan.params)

    def open(self) -> tuple[ZarrArray, zarr.Array]:
        """The prediction and the array written."""
        out = zarr.open_array(str(Path(self.target[0]) / self.target[1]), mode="r+")
        return self.plan.source.array(), out

    def labels(self, prediction: np.ndarray) -> np.ndarray:
        """The task's labels (C, *spatial) for a prediction (C, *spatial)."""
        labels = self.plan.task.post_process(prediction, self.params)
        if not self.plan.channel_axis:
            labels = labels[None]
        if self.plan.connected_components:
            labels = np.stack([connected_components(c)[0] for c in labels]).astype(np.uint64)
        return labels

    def __call__(self, block: Block) -> int:
        """Label one block; returns the voxels written."""
        pred_array, out = self.opened
        plan = self.plan
        vs = plan.source.voxel_size
        read = block.read_roi.intersect(plan.source.roi)
        labels = self.labels(plan.source.read(pred_array, read))
        own = block.write_roi.to_slices(read.begin, vs)
        target = block.write_roi.to_slices(plan.grid.roi.begin, vs)
        crop = labels[(slice(None), *own)]
        if not plan.instances:
            if plan.channel_axis:
                out[(slice(None), *target)] = crop
            else:
                out[target] = crop[0]
            return int(np.prod(crop.shape[1:]))
        fragments, views, counts, sizes = self._fragments(block, labels, own)
        out[(slice(None), *target)] = fragments
        faces = {"counts": counts, "sizes": sizes}
        for axis in range(plan.grid.roi.dims):
            faces[f"own_lo_{axis}"] = np.take(fragments, 0, axis=axis + 1)
            faces[f"own_hi_{axis}"] = np.take(fragments, -1, axis=axis + 1)
            for side, view in views[axis].items():
                faces[f"view_{side}_{axis}"] = view
        save_npz(self.faces_dir / f"{block.name}.npz", **faces)
        return int(np.prod(fragments.shape[1:]))

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
            base = self.plan.offset(block, c)
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
