"""One block's prediction, and the worker that predicts and writes blocks.

The model is loaded once per process (:func:`load_model`; each Dask worker loads
its own). A :class:`BlockRunner` reads a block's input and predicts it: for a
network with context, the region it writes grown by that context (padded at the
volume's edge as in training) in one forward pass; for a 'same'-padding network,
every window of one sliding-window pass over the ROI that touches the block,
blended with Gaussian weights (:mod:`~dacapo_hydra.inference.windows`; a window
shared with other blocks is computed once per process). :class:`BlockPredictor`
writes that region into the output, aligned to its chunks, in three stages that
:func:`~dacapo_hydra.inference.schedule.run_blocks` overlaps (read, forward, write);
:func:`predict_roi` keeps the same blocks in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from dacapo_hydra.data.array import Array, ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid, StagedWorker
from dacapo_hydra.inference.encoding import encode_uint8
from dacapo_hydra.inference.options import PredictOptions
from dacapo_hydra.inference.plan import BlockPlan
from dacapo_hydra.inference.windows import WindowCache, WindowGrid, blend
from dacapo_hydra.training.module import RunModule

_MODELS: dict[tuple[str, int, int, bool], RunModule] = {}


def load_model(checkpoint: str | Path, trust_checkpoint: bool = False) -> RunModule:
    """A trained module from a checkpoint, cached per process (each Dask worker loads once).

    Args:
        checkpoint: the checkpoint file.
        trust_checkpoint: build whatever its stored config names (see
            :meth:`~dacapo_hydra.training.module.RunModule.from_checkpoint`); by default only the
            allow-list of :mod:`dacapo_hydra.trust`.

    """
    path = Path(checkpoint).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    stat = path.stat()
    # A module loaded with trust never answers a load without it; a rewritten file reloads.
    key = (str(path), stat.st_mtime_ns, stat.st_size, trust_checkpoint)
    if key not in _MODELS:
        module = RunModule.from_checkpoint(path, trust=trust_checkpoint)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _MODELS[key] = module.to(device).eval()
    return _MODELS[key]


class BlockRunner:
    """Reads and predicts the blocks of one ROI in one process (thread-safe per block).

    Args:
        module: the trained module (eval mode).
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
        module: RunModule,
        raw: Array,
        roi: Roi,
        plan: BlockPlan,
        normalize: Callable[[np.ndarray], np.ndarray],
        pad_mode: str,
        mirror: bool = False,
    ) -> None:
        self.module = module
        self.raw = raw
        self.roi = roi
        self.plan = plan
        self.normalize = normalize
        self.pad_mode = pad_mode
        self.forward = _mirrored(module) if mirror else module.predict
        weight = next(module.parameters())
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


def _mirrored(module: RunModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's prediction averaged over all flips of the spatial axes."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        spatial = range(2, x.ndim)
        flips = [c for n in range(len(spatial) + 1) for c in itertools.combinations(spatial, n)]
        total = None
        for axes in flips:
            y = module.predict(x.flip(axes) if axes else x)
            y = y.flip(axes) if axes else y
            total = y if total is None else total + y
        return total / len(flips)

    return forward


def predict_roi(
    module: RunModule,
    raw: Array,
    roi: Roi,
    normalize: Callable[[np.ndarray], np.ndarray],
    pad_mode: str,
    input_shape: Sequence[int] | None = None,
    mirror: bool = False,
    overlap: float = 0.5,
    block_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Activated prediction (C, *spatial) of `roi`, block by block, held in memory.

    The blocks are those :func:`~dacapo_hydra.inference.predict.predict` runs (same
    plan and grid), so the result equals what it writes for the same ROI; for small
    volumes (validation).
    """
    plan = BlockPlan.for_module(module, raw.voxel_size, input_shape, overlap, block_shape)
    grid = BlockGrid(roi, plan.block_size, plan.context)
    runner = BlockRunner(module, raw, roi, plan, normalize, pad_mode, mirror)
    out = np.zeros((module.task.num_channels, *roi.voxel_shape(plan.voxel_size)), np.float32)
    for block in grid:
        region = block.write_roi.to_slices(roi.begin, plan.voxel_size)
        out[(slice(None), *region)] = runner.predict(block, runner.read(block))
    return out


class BlockPredictor(StagedWorker[tuple[BlockRunner, zarr.Array], torch.Tensor, np.ndarray]):
    """Predicts one block (:class:`BlockRunner`) and writes its region, in three stages.

    Picklable (it holds paths, not arrays or models) so Dask can ship it to workers;
    each worker opens the arrays and loads the model once.

    Args:
        model: a checkpoint path (loaded per worker) or a live module (in-process only).
        raw: (container, dataset) of the input; its voxel size and offset are the
            file's unless `options` give them.
        output: (container, dataset) of the output multiscale group.
        plan: block shapes.
        grid_roi: the output ROI the blocks tile.
        normalize: raw intensities to network input.
        pad_mode: padding where a block's input leaves the volume.
        options: dtype (uint8 scales `value_range` to 0..255), mirroring, the input's
            voxel size and offset, and whether workers trust the checkpoint.

    """

    def __init__(
        self,
        model: str | RunModule,
        raw: tuple[str, str],
        output: tuple[str, str],
        plan: BlockPlan,
        grid_roi: Roi,
        normalize: Callable[[np.ndarray], np.ndarray],
        pad_mode: str,
        options: PredictOptions,
    ) -> None:
        self.model = model
        self.raw = raw
        self.output = output
        self.plan = plan
        self.grid_roi = grid_roi
        self.normalize = normalize
        self.pad_mode = pad_mode
        self.options = options

    @property
    def dtype(self) -> str:
        """The output dtype."""
        return self.options.dtype

    @property
    def value_range(self) -> tuple[float, float]:
        """The activation's range that uint8 output scales to 0..255."""
        return self.options.value_range

    def __getstate__(self) -> dict[str, Any]:
        if isinstance(self.model, RunModule):
            raise TypeError("a live module cannot go to Dask workers: give a checkpoint path")
        return super().__getstate__()

    def open(self) -> tuple[BlockRunner, zarr.Array]:
        """The input's runner (with the model) and the output's `s0`."""
        container, dataset = self.raw
        raw = ZarrArray.open(
            container,
            dataset,
            voxel_size=self.options.raw_voxel_size,
            offset=self.options.raw_offset,
        )
        runner = BlockRunner(
            self.module(),
            raw,
            self.grid_roi,
            self.plan,
            self.normalize,
            self.pad_mode,
            self.options.mirror,
        )
        return runner, zarr.open_group(self.output[0], mode="r+")[f"{self.output[1]}/s0"]

    def module(self) -> RunModule:
        """The model: the live module, or the checkpoint's, loaded once per process."""
        if isinstance(self.model, RunModule):
            return self.model
        return load_model(self.model, self.options.trust_checkpoint)

    def load(self, block: Block) -> torch.Tensor:
        """Read and normalise the block's input."""
        return self.opened[0].read(block)

    def compute(self, block: Block, loaded: torch.Tensor) -> np.ndarray:
        """The block's activated prediction, in the output dtype."""
        return self.convert(self.opened[0].predict(block, loaded))

    def store(self, block: Block, computed: np.ndarray) -> int:
        """Write the block's region; returns the voxels written."""
        region = block.write_roi.to_slices(self.grid_roi.begin, self.plan.voxel_size)
        self.opened[1][(slice(None), *region)] = computed
        return int(np.prod(computed.shape[1:]))

    def convert(self, pred: np.ndarray) -> np.ndarray:
        """Cast to the output dtype (uint8: `value_range` scaled to 0..255)."""
        if self.dtype == "uint8":
            return encode_uint8(pred, self.value_range)
        return pred.astype(self.dtype)
