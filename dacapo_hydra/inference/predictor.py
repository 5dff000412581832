"""The worker that predicts blocks and writes them to zarr.

The model is loaded once per process (:func:`~dacapo_hydra.model.load.load_cached`;
each Dask worker loads its own). A block is read and predicted as in memory
(:class:`~dacapo_hydra.model.predict.BlockRunner`); :class:`BlockPredictor` writes
its region into the output, aligned to its chunks, in three stages that
:func:`~dacapo_hydra.inference.schedule.run_blocks` overlaps (read, forward, write).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import zarr

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, StagedWorker
from dacapo_hydra.inference.encoding import encode_uint8
from dacapo_hydra.inference.options import PredictOptions
from dacapo_hydra.model.load import load_cached
from dacapo_hydra.model.plan import BlockPlan
from dacapo_hydra.model.predict import BlockRunner
from dacapo_hydra.model.trained import TrainedModel


class BlockPredictor(StagedWorker[tuple[BlockRunner, zarr.Array], torch.Tensor, np.ndarray]):
    """Predicts one block (:class:`BlockRunner`) and writes its region, in three stages.

    Picklable (it holds paths, not arrays or models) so Dask can ship it to workers;
    each worker opens the arrays and loads the model once.

    Args:
        model: a checkpoint path (loaded per worker) or a live model (in-process only).
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
        model: str | TrainedModel,
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
        if isinstance(self.model, TrainedModel):
            raise TypeError("a live model cannot go to Dask workers: give a checkpoint path")
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

    def module(self) -> TrainedModel:
        """The model: the live one, or the checkpoint's, loaded once per process."""
        if isinstance(self.model, TrainedModel):
            return self.model
        return load_cached(self.model, trust=self.options.trust_checkpoint)

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
