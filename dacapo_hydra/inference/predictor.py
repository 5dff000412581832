"""One block's prediction, and the worker that predicts and writes blocks.

The model is loaded once per process (:func:`load_model`; each Dask worker loads
its own). A block reads its input (the region it writes grown by a context,
padded at the volume's edge as in training), normalises it, runs one forward
pass or MONAI's Gaussian-blended sliding window (:class:`~dacapo_hydra.inference.plan.BlockPlan`),
applies the task's activation and keeps exactly its region
(:func:`predict_block`). :class:`BlockPredictor` writes that region into the
output, aligned to its chunks; :func:`predict_roi` keeps the same blocks in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from monai.inferers import sliding_window_inference

from dacapo_hydra.data.array import Array, ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid, BlockWorker
from dacapo_hydra.inference.options import PredictOptions
from dacapo_hydra.inference.plan import BlockPlan
from dacapo_hydra.training.module import RunModule

# MONAI's Gaussian blending: sigma of the importance map per window side.
SIGMA_SCALE = 0.125

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


def predict_block(
    module: RunModule,
    raw: Array,
    block: Block,
    plan: BlockPlan,
    normalize: Callable[[np.ndarray], np.ndarray],
    pad_mode: str,
    mirror: bool = False,
) -> np.ndarray:
    """Activated prediction (C, *write_shape) of a block's full (unclipped) output region.

    Reads `block.read_roi` from `raw` (padded with `pad_mode` outside it),
    normalises, and runs one forward pass, or for a blending plan MONAI's
    `sliding_window_inference` with Gaussian weights, whose windows then lie on
    the grid every block shares; the margin is cut off.

    Args:
        module: the trained module (eval mode).
        raw: the input array.
        block: one block of a grid made with `plan.block_size` and `plan.context`.
        plan: the block shapes.
        normalize: raw intensities to network input.
        pad_mode: `reflect`, `edge` or `constant`, as in training.
        mirror: average the predictions over all axis flips (test-time augmentation).

    """
    data = raw.read_padded(block.read_roi, pad_mode)
    if raw.num_channels is None:
        data = data[None]
    weight = next(module.parameters())
    # The input follows the weights' device and dtype (a half-precision model included).
    x = torch.from_numpy(np.ascontiguousarray(normalize(data)))[None]
    x = x.to(weight.device, dtype=weight.dtype if weight.is_floating_point() else None)
    forward = _mirrored(module) if mirror else module.predict
    with torch.inference_mode():
        if plan.blend_margin is None:
            y = forward(x)
        else:
            y = sliding_window_inference(
                x,
                roi_size=plan.input_shape,
                sw_batch_size=1,
                predictor=forward,
                overlap=plan.overlap,
                mode="gaussian",
                sigma_scale=SIGMA_SCALE,
            )
            cut = tuple(
                slice(m * u, m * u + w)
                for m, u, w in zip(plan.blend_margin, plan.upsample, plan.write_shape, strict=True)
            )
            y = y[(slice(None), slice(None), *cut)]
    return y[0].float().cpu().numpy()


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


def _crop(pred: np.ndarray, region: Sequence[slice]) -> np.ndarray:
    """The first voxels of a block's full prediction that its (clipped) region holds."""
    return pred[(slice(None), *(slice(0, r.stop - r.start) for r in region))]


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
    out = np.zeros((module.task.num_channels, *roi.voxel_shape(plan.voxel_size)), np.float32)
    for block in grid:
        pred = predict_block(module, raw, block, plan, normalize, pad_mode, mirror)
        region = block.write_roi.to_slices(roi.begin, plan.voxel_size)
        out[(slice(None), *region)] = _crop(pred, region)
    return out


class BlockPredictor(BlockWorker[tuple[ZarrArray, zarr.Array]]):
    """Predicts one block (:func:`predict_block`) and writes its region.

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

    def open(self) -> tuple[ZarrArray, zarr.Array]:
        """The input and the output's `s0`."""
        container, dataset = self.raw
        raw = ZarrArray.open(
            container,
            dataset,
            voxel_size=self.options.raw_voxel_size,
            offset=self.options.raw_offset,
        )
        return raw, zarr.open_group(self.output[0], mode="r+")[f"{self.output[1]}/s0"]

    def module(self) -> RunModule:
        """The model: the live module, or the checkpoint's, loaded once per process."""
        if isinstance(self.model, RunModule):
            return self.model
        return load_model(self.model, self.options.trust_checkpoint)

    def __call__(self, block: Block) -> int:
        """Predict and write one block; returns the voxels written."""
        raw, out = self.opened
        pred = predict_block(
            self.module(), raw, block, self.plan, self.normalize, self.pad_mode, self.options.mirror
        )
        region = block.write_roi.to_slices(self.grid_roi.begin, self.plan.voxel_size)
        pred = _crop(pred, region)
        out[(slice(None), *region)] = self.convert(pred)
        return int(np.prod(pred.shape[1:]))

    def convert(self, pred: np.ndarray) -> np.ndarray:
        """Cast to the output dtype (uint8: `value_range` scaled to 0..255)."""
        if self.dtype == "uint8":
            lo, hi = self.value_range
            return np.clip(np.round((pred - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
        return pred.astype(self.dtype)
