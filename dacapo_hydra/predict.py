"""Out-of-core, resumable, blockwise prediction from zarr to zarr, optionally on Dask.

Each block reads the network's eval input (its output region grown by the
network's context, padded at the volume's edge as in training), predicts, applies
the task's activation and writes exactly its output region, aligned to the output
array's chunks; so blocks never write the same chunk and memory holds only the
blocks in flight. Finished blocks are recorded in a ledger beside the output, and a
rerun does only the missing ones.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from dacapo_hydra.blockwise import Block, BlockGrid, BlockLedger, run_blocks
from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.ome import ScaleLevel, multiscale_attrs
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.module import RunModule

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "uint8")
LEDGER_DIR = ".dacapo_blocks"

_MODELS: dict[str, RunModule] = {}


def load_model(checkpoint: str | Path) -> RunModule:
    """A trained module from a checkpoint, cached per process (each Dask worker loads once)."""
    from dacapo_hydra.run import module_from_checkpoint

    key = str(Path(checkpoint).resolve())
    if key not in _MODELS:
        module = module_from_checkpoint(key)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _MODELS[key] = module.to(device).eval()
    return _MODELS[key]


@dataclass(frozen=True)
class BlockPlan:
    """Shapes of one prediction block, in voxels and nm."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    write_shape: tuple[int, ...]
    raw_voxel_size: tuple[float, ...]
    voxel_size: tuple[float, ...]

    @property
    def context(self) -> tuple[float, ...]:
        """Nm read beyond the written region on each side."""
        return tuple(
            (i * rv - w * v) / 2
            for i, w, rv, v in zip(
                self.input_shape,
                self.write_shape,
                self.raw_voxel_size,
                self.voxel_size,
                strict=True,
            )
        )

    @property
    def block_size(self) -> tuple[float, ...]:
        """Nm written per block."""
        return tuple(w * v for w, v in zip(self.write_shape, self.voxel_size, strict=True))

    @classmethod
    def for_module(
        cls,
        module: RunModule,
        raw_voxel_size: Sequence[float],
        input_shape: Sequence[int] | None = None,
    ) -> BlockPlan:
        """The plan for a module's eval input shape (or `input_shape`).

        A network without context ('same' padding) writes only the centre of its
        output, leaving a quarter of the input on each side as overlap, so blocks
        don't show their edges.
        """
        arch = module.architecture
        shape = tuple(input_shape or arch.eval_input_shape)
        out = arch.output_shape(shape)
        up = arch.upsample_factor
        vs = tuple(v / u for v, u in zip(raw_voxel_size, up, strict=True))
        if all(i * u == o for i, o, u in zip(shape, out, up, strict=True)):
            write = tuple(o - 2 * (o // 4) for o in out)
        else:
            write = out
        return cls(shape, tuple(out), write, tuple(raw_voxel_size), vs)


def open_output(
    container: str | Path,
    dataset: str,
    roi: Roi,
    voxel_size: Sequence[float],
    channels: int,
    dtype: str,
    chunks: Sequence[int],
) -> zarr.Array:
    """Create the output array (an OME-NGFF 0.5 multiscale group with `s0`), or reopen it.

    An existing output is reused (to resume) only if it is the same array; else
    a ValueError names it, and nothing is written.
    """
    shape = (channels, *(int(round(s / v)) for s, v in zip(roi.shape, voxel_size, strict=True)))
    chunk_shape = (channels, *(int(c) for c in chunks))
    root = zarr.open_group(str(container), mode="a", zarr_format=3)
    if dataset in root:
        existing = ZarrArray.open(container, dataset)
        same = (
            existing.array.shape == shape
            and existing.dtype == np.dtype(dtype)
            and existing.array.chunks == chunk_shape
            and np.allclose(existing.voxel_size, voxel_size)
            and np.allclose(existing.offset, roi.begin)
        )
        if not same:
            raise ValueError(
                f"output {container}:{dataset} already holds a different array "
                f"(shape {existing.array.shape}, {existing.dtype}, chunks {existing.array.chunks}, "
                f"voxel size {existing.voxel_size}, offset {existing.offset}); expected shape "
                f"{shape}, {dtype}, chunks {chunk_shape}, voxel size {tuple(voxel_size)}, offset "
                f"{roi.begin}. Choose another output or delete it."
            )
        return existing.array
    group = root.create_group(dataset)
    array = group.create_array("s0", shape=shape, chunks=chunk_shape, dtype=dtype, fill_value=0)
    attrs = multiscale_attrs(
        dataset.rsplit("/", 1)[-1], [ScaleLevel("s0", tuple(voxel_size), roi.begin)]
    )
    ms = attrs["ome"]["multiscales"][0]
    ms["axes"].insert(0, {"name": "c", "type": "channel"})
    for ds in ms["datasets"]:
        for t in ds["coordinateTransformations"]:
            key = "scale" if t["type"] == "scale" else "translation"
            t[key] = [1.0 if key == "scale" else 0.0, *t[key]]
    group.attrs.update(attrs)
    return array


class BlockPredictor:
    """Predicts one block: read with context, normalise, forward, activate, write.

    Picklable (it holds paths, not arrays or models) so Dask can ship it to workers;
    each worker opens the arrays and loads the model once.

    Args:
        model: a checkpoint path (loaded per worker) or a live module (in-process only).
        raw: (container, dataset) of the input; voxel size/offset as opened by ZarrArray.
        output: (container, dataset) of the output multiscale group.
        plan: block shapes.
        grid_roi: the output ROI the blocks tile.
        norm: (min, max) raw intensities mapped to [0, 1].
        pad_mode: padding where a block's input leaves the volume.
        dtype: output dtype; uint8 scales `value_range` to 0..255.
        value_range: the activation's range, for uint8 output.
        mirror: test-time augmentation: average the predictions over all axis flips.

    """

    def __init__(
        self,
        model: str | RunModule,
        raw: tuple[str, str, Sequence[float] | None, Sequence[float] | None],
        output: tuple[str, str],
        plan: BlockPlan,
        grid_roi: Roi,
        norm: tuple[float, float],
        pad_mode: str,
        dtype: str,
        value_range: tuple[float, float] = (0.0, 1.0),
        mirror: bool = False,
    ) -> None:
        self.model = model
        self.raw = raw
        self.output = output
        self.plan = plan
        self.grid_roi = grid_roi
        self.norm = norm
        self.pad_mode = pad_mode
        self.dtype = dtype
        self.value_range = value_range
        self.mirror = mirror
        self._arrays: tuple[ZarrArray, zarr.Array] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = None
        if isinstance(self.model, RunModule):
            raise TypeError("a live module cannot go to Dask workers: give a checkpoint path")
        return state

    def _open(self) -> tuple[RunModule, ZarrArray, zarr.Array]:
        module = load_model(self.model) if isinstance(self.model, str | Path) else self.model
        if self._arrays is None:
            container, dataset, vs, off = self.raw
            raw = ZarrArray.open(container, dataset, voxel_size=vs, offset=off)
            out = zarr.open_group(self.output[0], mode="r+")[f"{self.output[1]}/s0"]
            self._arrays = (raw, out)
        return module, *self._arrays

    def forward(self, module: RunModule, raw: np.ndarray) -> np.ndarray:
        """Activated prediction (C, *out) for one normalised input (C, *in)."""
        device = next(module.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(raw))[None].to(device)
        flips = [()]
        if self.mirror:
            spatial = range(2, x.ndim)
            flips = [c for n in range(len(spatial) + 1) for c in itertools.combinations(spatial, n)]
        with torch.inference_mode():
            total = None
            for axes in flips:
                y = module.predict(x.flip(axes) if axes else x)
                y = y.flip(axes) if axes else y
                total = y if total is None else total + y
        return (total / len(flips))[0].float().cpu().numpy()

    def __call__(self, block: Block) -> int:
        """Predict and write one block; returns the voxels written."""
        module, raw, out = self._open()
        data = raw.read_padded(block.read_roi, self.pad_mode)
        if raw.num_channels is None:
            data = data[None]
        lo, hi = self.norm
        data = ((data.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)
        pred = self.forward(module, data)
        # The prediction covers the block's full output region; keep what it writes.
        vs = self.plan.voxel_size
        margin = [
            (o - w) // 2 for o, w in zip(self.plan.output_shape, self.plan.write_shape, strict=True)
        ]
        full_begin = np.add(block.read_roi.begin, self.plan.context)
        start = np.round((np.subtract(block.write_roi.begin, full_begin)) / vs).astype(int) + margin
        size = np.round(np.asarray(block.write_roi.shape) / vs).astype(int)
        pred = pred[(slice(None), *(slice(a, a + n) for a, n in zip(start, size, strict=True)))]
        target = np.round(np.subtract(block.write_roi.begin, self.grid_roi.begin) / vs).astype(int)
        index = (slice(None), *(slice(a, a + n) for a, n in zip(target, size, strict=True)))
        out[index] = self.convert(pred)
        return int(np.prod(size))

    def convert(self, pred: np.ndarray) -> np.ndarray:
        """Cast to the output dtype (uint8: `value_range` scaled to 0..255)."""
        if self.dtype == "uint8":
            lo, hi = self.value_range
            return np.clip(np.round((pred - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
        return pred.astype(self.dtype)


@dataclass
class PredictResult:
    """Where the prediction went and how fast it was."""

    container: str
    dataset: str
    roi: Roi
    voxel_size: tuple[float, ...]
    blocks: int
    blocks_done_now: int
    seconds: float
    voxels_per_s: float


def predict(
    model: str | Path | RunModule,
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    out_dataset: str,
    roi: Roi | None = None,
    dtype: str = "float32",
    value_range: tuple[float, float] = (0.0, 1.0),
    workers: int = 1,
    scheduler: str | None = None,
    mirror: bool = False,
    input_shape: Sequence[int] | None = None,
    raw_voxel_size: Sequence[float] | None = None,
    raw_offset: Sequence[float] | None = None,
    progress: bool = True,
) -> PredictResult:
    """Predict `raw` (or its `roi`) blockwise into an OME-NGFF zarr array.

    Everything is checked before anything is written: the model exists, the input
    exists and has the voxel size the model was trained on, the output is absent or
    the same array (then only unfinished blocks run).

    Args:
        model: checkpoint path, or a live module (in-process only).
        raw_container: input zarr container.
        raw_dataset: input array or multiscale group inside it.
        out_container: output zarr container (created if missing).
        out_dataset: output group inside it; the array is `<out_dataset>/s0`.
        roi: world ROI to predict (default: the whole input).
        dtype: float32, float16 or uint8.
        value_range: the activation's range, scaled to 0..255 for uint8.
        workers: Dask LocalCluster workers (1: in this process).
        scheduler: a Dask scheduler address instead of a LocalCluster.
        mirror: average over mirrored inputs (test-time augmentation).
        input_shape: block input shape in voxels (default: the architecture's eval shape).
        raw_voxel_size: input voxel size where the file has no metadata.
        raw_offset: input offset where the file has no metadata.
        progress: show a progress bar.

    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if isinstance(model, RunModule):
        module = model
    else:
        if not Path(model).is_file():
            raise FileNotFoundError(f"model checkpoint {str(model)!r} does not exist")
        module = load_model(model)
        model = str(Path(model).resolve())
    cfg = module.hparams["config"]
    meta = module.hparams["meta"]
    raw = ZarrArray.open(raw_container, raw_dataset, voxel_size=raw_voxel_size, offset=raw_offset)
    trained = tuple(float(v) for v in meta["voxel_size"])
    if not np.allclose(raw.voxel_size, trained):
        raise ValueError(
            f"input {raw.where} has voxel size {raw.voxel_size} nm; the model was trained on "
            f"{trained} nm (pick the matching scale level, or resample the input)"
        )
    if raw.dims != meta["dims"]:
        raise ValueError(
            f"input {raw.where} has {raw.dims} spatial axes; the model expects {meta['dims']}"
        )
    plan = BlockPlan.for_module(module, raw.voxel_size, input_shape)
    roi = roi or raw.roi
    if not raw.roi.contains(roi):
        raise ValueError(f"roi {roi} is not inside the input {raw.where} ({raw.roi})")
    for r in (roi.begin, roi.shape):
        off = np.asarray(r) / plan.voxel_size
        if not np.allclose(off, np.round(off)):
            raise ValueError(f"roi {roi} is not on the output voxel grid ({plan.voxel_size} nm)")
    array = open_output(
        out_container,
        out_dataset,
        roi,
        plan.voxel_size,
        module.task.num_channels,
        dtype,
        plan.write_shape,
    )
    del array
    ledger = BlockLedger(Path(out_container) / LEDGER_DIR / out_dataset)
    grid = BlockGrid(roi, plan.block_size, plan.context)
    predictor = BlockPredictor(
        model,
        (str(raw_container), raw_dataset, raw_voxel_size, raw_offset),
        (str(out_container), out_dataset),
        plan,
        roi,
        (cfg["datasplit"]["normalize"]["min"], cfg["datasplit"]["normalize"]["max"]),
        cfg["datasplit"].get("pad_mode", "reflect"),
        dtype,
        value_range,
        mirror,
    )
    figures = run_blocks(predictor, list(grid), ledger, workers, scheduler, "predict", progress)
    return PredictResult(
        str(out_container),
        out_dataset,
        roi,
        plan.voxel_size,
        len(grid),
        int(figures["blocks"]),
        figures["seconds"],
        figures["voxels_per_s"],
    )


def clear_ledger(out_container: str | Path, out_dataset: str) -> None:
    """Forget which blocks finished (the next run redoes all of them)."""
    shutil.rmtree(Path(out_container) / LEDGER_DIR / out_dataset, ignore_errors=True)
