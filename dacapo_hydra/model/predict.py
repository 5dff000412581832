"""Prediction of a ROI block by block, in memory: what validation runs.

A :class:`BlockRunner` reads a block's input and predicts it: for a network with
context, the region it writes grown by that context (padded at the volume's edge as
in training) in one forward pass; for a 'same'-padding network, every window of one
sliding-window pass over the ROI that touches the block, blended with Gaussian
weights (:mod:`~dacapo_hydra.model.windows`; a window shared with other blocks is
computed once per process). :func:`predict_roi` runs every block of a ROI into one
array; `inference/` runs the same blocks into zarr
(:class:`~dacapo_hydra.inference.predictor.BlockPredictor`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.model.grid import Block, BlockGrid
from dacapo_hydra.model.plan import OVERLAP, BlockPlan
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.model.windows import WindowCache, WindowGrid, blend


class BlockRunner:
    """Reads and predicts the blocks of one ROI in one process (thread-safe per block).

    Args:
        model: the trained model (eval mode).
        raw: the input array.
        roi: the world ROI the blocks tile (windows of 'same'-padding networks are
            placed over it).
        plan: the block shapes.
        normalize: raw intensities to network input.
        pad_mode: `reflect`, `edge` or `constant`, as in training.
        mirror: average the predictions over all axis flips (test-time augmentation).

    """

    def __init__(
        self,
        model: TrainedModel,
        raw: Array,
        roi: Roi,
        plan: BlockPlan,
        normalize: Callable[[np.ndarray], np.ndarray],
        pad_mode: str,
        mirror: bool = False,
    ) -> None:
        self.model = model
        self.raw = raw
        self.roi = roi
        self.plan = plan
        self.normalize = normalize
        self.pad_mode = pad_mode
        self.forward = _mirrored(model) if mirror else model
        weight = next(model.parameters())
        self.device = weight.device
        # The input follows the weights' dtype (a half-precision model included).
        self.dtype = weight.dtype if weight.is_floating_point() else None
        self.windows: WindowGrid | None = None
        if plan.blend:
            shape = roi.voxel_shape(plan.raw_voxel_size)
            self.windows = WindowGrid.over(shape, plan.input_shape, plan.overlap, plan.upsample)
            blocks = BlockGrid(roi, plan.block_size, plan.context).shape
            windows = self.windows
            self.cache = WindowCache(lambda s: windows.blocks_touched(s, plan.write_shape, blocks))
            self.weights = windows.importance(self.device)

    def _region(self, block: Block) -> tuple[slice, ...]:
        """The block's (clipped) write region in output voxels of the ROI."""
        return block.write_roi.to_slices(self.roi.begin, self.plan.voxel_size)

    def _touching(self, block: Block) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
        """A blending block's windows and the first input voxel (of the ROI) they read."""
        assert self.windows is not None
        region = tuple(
            slice(r.start // u, -(-r.stop // u))
            for r, u in zip(self._region(block), self.plan.upsample, strict=True)
        )
        starts = self.windows.touching(region)
        return starts, tuple(min(axis) for axis in zip(*starts, strict=True))

    def read(self, block: Block) -> torch.Tensor:
        """The block's normalised input (1, C, *shape): its read ROI, or its windows' box."""
        if self.windows is None:
            roi = block.read_roi
        else:
            starts, low = self._touching(block)
            high = [
                max(s) + w
                for s, w in zip(zip(*starts, strict=True), self.plan.input_shape, strict=True)
            ]
            vs = self.plan.raw_voxel_size
            roi = Roi(
                tuple(b + lo * v for b, lo, v in zip(self.roi.begin, low, vs, strict=True)),
                tuple((hi - lo) * v for lo, hi, v in zip(low, high, vs, strict=True)),
            )
        data = self.raw.read_padded(roi, self.pad_mode)
        if self.raw.num_channels is None:
            data = data[None]
        return torch.from_numpy(np.ascontiguousarray(self.normalize(data)))[None]

    def predict(self, block: Block, x: torch.Tensor) -> np.ndarray:
        """Activated prediction (C, *region) of the block's (clipped) write region."""
        x = x.to(self.device, dtype=self.dtype)
        region = self._region(block)
        with torch.inference_mode():
            if self.windows is None:
                y = self.forward(x)[0]
                y = y[(slice(None), *(slice(0, r.stop - r.start) for r in region))]
            else:
                y = self._blend(block, x, region)
        return y.float().cpu().numpy()

    def _window(self, start: tuple[int, ...], low: tuple[int, ...]) -> tuple[slice, ...]:
        """The window at `start` in a block input whose first voxel is `low`."""
        shape = self.plan.input_shape
        return tuple(slice(s - lo, s - lo + w) for s, lo, w in zip(start, low, shape, strict=True))

    def _blend(self, block: Block, x: torch.Tensor, region: Sequence[slice]) -> torch.Tensor:
        """Every window touching the block (computed here, by another block, or cached), blended."""
        assert self.windows is not None
        starts, low = self._touching(block)
        mine, futures = self.cache.claim(starts)
        size = self.plan.window_batch
        try:
            for first in range(0, len(mine), size):
                batch = mine[first : first + size]
                inputs = [
                    x[(slice(None), slice(None), *self._window(start, low))] for start in batch
                ]
                outputs = self.forward(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
                # Each window in its own storage: a view would keep its whole batch alive
                # in the cache, beyond the bytes the cache counts.
                for start, output in zip(batch, outputs, strict=True):
                    self.cache.put(start, output.clone() if len(batch) > 1 else output)
        except BaseException as error:
            self.cache.fail(mine, error)
            raise
        outputs = {s: futures[s].result() for s in starts}
        y = blend(self.windows, region, outputs, self.weights)
        self.cache.release(starts)
        return y


def _mirrored(model: TrainedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's prediction averaged over all flips of the spatial axes."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        spatial = range(2, x.ndim)
        flips = [c for n in range(len(spatial) + 1) for c in itertools.combinations(spatial, n)]
        total = None
        for axes in flips:
            y = model(x.flip(axes) if axes else x)
            y = y.flip(axes) if axes else y
            total = y if total is None else total + y
        return total / len(flips)

    return forward


def predict_roi(
    model: TrainedModel,
    raw: Array,
    roi: Roi,
    normalize: Callable[[np.ndarray], np.ndarray],
    pad_mode: str,
    input_shape: Sequence[int] | None = None,
    mirror: bool = False,
    overlap: float = OVERLAP,
    block_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Activated prediction (C, *spatial) of `roi`, block by block, held in memory.

    The blocks are those :func:`~dacapo_hydra.inference.predict.predict` runs (same
    plan and grid), so the result equals what it writes for the same ROI; for small
    volumes (validation).
    """
    plan = BlockPlan.for_model(model, raw.voxel_size, input_shape, overlap, block_shape)
    grid = BlockGrid(roi, plan.block_size, plan.context)
    runner = BlockRunner(model, raw, roi, plan, normalize, pad_mode, mirror)
    out = np.zeros((model.task.num_channels, *roi.voxel_shape(plan.voxel_size)), np.float32)
    for block in grid:
        region = block.write_roi.to_slices(roi.begin, plan.voxel_size)
        out[(slice(None), *region)] = runner.predict(block, runner.read(block))
    return out
