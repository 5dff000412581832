"""Out-of-core, resumable, blockwise prediction from zarr to zarr, optionally on Dask.

Each block reads its input (the region it writes grown by a context, padded at the
volume's edge as in training), predicts, applies the task's activation and writes
exactly its region, aligned to the output array's chunks; so blocks never write the
same chunk and memory holds only the blocks in flight. Finished blocks are recorded
in a ledger beside the output, and a rerun does only the missing ones. The output
records what made it (:mod:`~dacapo_hydra.inference.provenance`: the model's sha256 over its
weights and stored config, the input and its ROI, the parameters); a rerun that
differs in any of them is refused with the difference named, so an output is never
stitched from two models, and `overwrite` starts afresh.

Two block geometries (:class:`BlockPlan`):

- valid convolutions (context > 0): one forward pass per block; the context is
  the network's, so tiles join seamlessly.
- 'same' padding (MONAI networks, `padding: same`): each block runs MONAI's
  sliding-window inference over overlapping windows on a grid fixed to the
  prediction ROI, blended with Gaussian weights, and keeps its central region.
  The context is the margin every window touching that region needs, so a block
  sees all the windows a whole-volume sliding-window pass would blend there, and
  blocks agree across their faces.
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from monai.inferers import sliding_window_inference

from dacapo_hydra.data.array import Array, ZarrArray
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.ome import ScaleLevel, create_image
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid, BlockLedger, run_blocks
from dacapo_hydra.inference.provenance import check_unchanged, model_sha256
from dacapo_hydra.training.module import RunModule

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "uint8")
LEDGER_DIR = ".dacapo_blocks"
# MONAI's Gaussian blending: sigma of the importance map per window side.
SIGMA_SCALE = 0.125

# The record of what made an output (:mod:`dacapo_hydra.inference.provenance`), in `dacapo.<key>`.
RECORD = "made_with"

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


def _blend_margin(window: int, stride: int) -> int:
    """Input voxels read beyond a block per side so its windows are symmetric about it.

    Windows start every `stride` voxels; a block of k strides is touched by the
    windows starting in (block begin - window, block end). Among the grid phases,
    the one placing a window start `m` before every block begin with
    m = ((c - 1) * stride + window) / 2, c = ceil(window / stride) - 1, makes the
    windows of a block reach exactly m past either end. For the common overlaps
    (window a multiple of the stride) m = window - stride.

    Raises:
        ValueError: if m is not a whole number of voxels.

    """
    c = math.ceil(window / stride) - 1
    twice = (c - 1) * stride + window
    if twice % 2:
        raise ValueError(
            f"a window of {window} voxels with stride {stride} has no whole-voxel margin; "
            "choose an even window (input_shape) or another overlap"
        )
    return twice // 2


@dataclass(frozen=True)
class BlockPlan:
    """Shapes of one prediction block, in voxels and nm.

    Attributes:
        input_shape: one forward pass's input (a sliding window's, when blending).
        output_shape: one forward pass's output.
        write_shape: output voxels written per block (the output's chunk shape).
        raw_voxel_size: input voxel size (nm).
        voxel_size: output voxel size (nm).
        overlap: window overlap (fraction) for 'same'-padding networks; None for
            networks with context (valid convolutions), which don't blend.
        blend_margin: input voxels read beyond the block per side, when blending.

    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    write_shape: tuple[int, ...]
    raw_voxel_size: tuple[float, ...]
    voxel_size: tuple[float, ...]
    overlap: float | None = None
    blend_margin: tuple[int, ...] | None = None

    @property
    def blend(self) -> bool:
        """Whether blocks blend overlapping windows ('same'-padding networks)."""
        return self.blend_margin is not None

    @property
    def upsample(self) -> tuple[int, ...]:
        """Output voxels per input voxel, per axis."""
        return tuple(o // i for o, i in zip(self.output_shape, self.input_shape, strict=True))

    @property
    def context(self) -> tuple[float, ...]:
        """Nm read beyond the written region on each side."""
        if self.blend_margin is not None:
            return tuple(m * v for m, v in zip(self.blend_margin, self.raw_voxel_size, strict=True))
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

    @property
    def read_shape(self) -> tuple[int, ...]:
        """Input voxels read per block."""
        return tuple(
            int(round(b / v + 2 * c / v))
            for b, c, v in zip(self.block_size, self.context, self.raw_voxel_size, strict=True)
        )

    @classmethod
    def for_module(
        cls,
        module: RunModule,
        raw_voxel_size: Sequence[float],
        input_shape: Sequence[int] | None = None,
        overlap: float = 0.5,
        block_shape: Sequence[int] | None = None,
    ) -> BlockPlan:
        """The plan for a module's eval input shape (or `input_shape`).

        Args:
            module: the trained module.
            raw_voxel_size: input voxel size (nm).
            input_shape: forward-pass input in voxels (default: the eval shape).
            overlap: for 'same'-padding networks, the fraction by which sliding
                windows overlap (MONAI's `overlap`: stride = int(window * (1 - overlap))).
            block_shape: for 'same'-padding networks, output voxels written per
                block, a multiple of the stride (default: the smallest multiple
                at least twice the window). Networks with context write one
                forward pass's output per block.

        Raises:
            ValueError: for a shape the network can't take, an overlap outside
                [0, 1), or a block shape that does not fit.

        """
        arch = module.architecture
        shape = tuple(int(s) for s in (input_shape or arch.eval_input_shape))
        arch.check_input_shape("eval_input_shape (prediction input_shape)", shape)
        out = tuple(arch.output_shape(shape))
        up = tuple(arch.upsample_factor)
        vs = tuple(v / u for v, u in zip(raw_voxel_size, up, strict=True))
        same = all(i * u == o for i, o, u in zip(shape, out, up, strict=True))
        if not same:
            if block_shape is not None and tuple(block_shape) != out:
                raise ValueError(
                    f"block_shape {list(block_shape)}: a network with context writes its output "
                    f"shape {list(out)} per block; leave block_shape unset"
                )
            return cls(shape, out, out, tuple(float(v) for v in raw_voxel_size), vs)
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        stride = tuple(max(int(i * (1 - overlap)), 1) for i in shape)
        margin = tuple(_blend_margin(i, s) for i, s in zip(shape, stride, strict=True))
        if block_shape is None:
            write = tuple(
                s * math.ceil(2 * i / s) * u for i, s, u in zip(shape, stride, up, strict=True)
            )
        else:
            write = tuple(int(b) for b in block_shape)
            if len(write) != len(shape) or any(
                b <= 0 or b % (s * u) for b, s, u in zip(write, stride, up, strict=True)
            ):
                steps = [s * u for s, u in zip(stride, up, strict=True)]
                raise ValueError(
                    f"block_shape {list(block_shape)} must be positive multiples of the window "
                    f"stride {steps} (output voxels: input_shape {list(shape)} with overlap "
                    f"{overlap})"
                )
        return cls(
            shape, out, write, tuple(float(v) for v in raw_voxel_size), vs, float(overlap), margin
        )


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


def _write_region(block: Block, origin: Sequence[float], voxel_size: Sequence[float]) -> tuple:
    """Voxel slices of a block's (clipped) write ROI, relative to `origin`."""
    begin = np.round(np.subtract(block.write_roi.begin, origin) / voxel_size).astype(int)
    size = np.round(np.asarray(block.write_roi.shape) / voxel_size).astype(int)
    return tuple(slice(int(b), int(b + n)) for b, n in zip(begin, size, strict=True))


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

    The blocks are those :func:`predict` runs (same plan and grid), so the result
    equals what :func:`predict` writes for the same ROI; for small volumes
    (validation).
    """
    plan = BlockPlan.for_module(module, raw.voxel_size, input_shape, overlap, block_shape)
    grid = BlockGrid(roi, plan.block_size, plan.context)
    shape = np.round(np.asarray(roi.shape) / plan.voxel_size).astype(int)
    out = np.zeros((module.task.num_channels, *shape), np.float32)
    for block in grid:
        pred = predict_block(module, raw, block, plan, normalize, pad_mode, mirror)
        region = _write_region(block, roi.begin, plan.voxel_size)
        out[(slice(None), *region)] = pred[
            (slice(None), *(slice(0, r.stop - r.start) for r in region))
        ]
    return out


def output_shape(roi: Roi, voxel_size: Sequence[float], channels: int) -> tuple[int, ...]:
    """Array shape (C, *spatial) of an output covering `roi`."""
    return (channels, *(int(round(s / v)) for s, v in zip(roi.shape, voxel_size, strict=True)))


def check_output(
    container: str | Path,
    dataset: str,
    shape: Sequence[int],
    dtype: str | np.dtype,
    chunks: Sequence[int],
    voxel_size: Sequence[float],
    offset: Sequence[float],
) -> bool:
    """Whether the output exists already as this very array (to resume); writes nothing.

    Raises:
        ValueError: if the path holds something else, naming it and what was expected.

    """
    path = Path(container)
    if not path.exists():
        return False
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a non-zarr folder
        raise ValueError(
            f"output {str(container)!r} exists and is not a zarr group: {err}"
        ) from err
    if dataset not in root:
        return False
    try:
        existing = ZarrArray.open(container, dataset)
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"output {container}:{dataset} already holds something that is not a prediction "
            f"array ({err.args[0] if err.args else err}); choose another output or delete it"
        ) from None
    same = (
        existing.array.shape == tuple(shape)
        and existing.dtype == np.dtype(dtype)
        and existing.array.chunks == tuple(chunks)
        and np.allclose(existing.voxel_size, voxel_size)
        and np.allclose(existing.offset, offset)
    )
    if not same:
        raise ValueError(
            f"output {container}:{dataset} already holds a different array "
            f"(shape {existing.array.shape}, {existing.dtype}, chunks {existing.array.chunks}, "
            f"voxel size {existing.voxel_size}, offset {existing.offset}); expected shape "
            f"{tuple(shape)}, {np.dtype(dtype)}, chunks {tuple(chunks)}, voxel size "
            f"{tuple(voxel_size)}, offset {tuple(offset)}. Choose another output or delete it."
        )
    return True


def open_output(
    container: str | Path,
    dataset: str,
    roi: Roi,
    voxel_size: Sequence[float],
    channels: int | None,
    dtype: str,
    chunks: Sequence[int],
    attrs: dict[str, Any] | None = None,
    label: bool = False,
) -> zarr.Array:
    """Create the output array (an OME-Zarr 0.5 multiscale group with `s0`), or reopen it.

    An existing output is reused (to resume) only if it is the same array; else
    a ValueError names it, and nothing is written. A new output is made
    discoverable (:func:`~dacapo_hydra.data.ome.create_image`): an image joins the
    container's collection; a label image at `<image>/labels/<name>` is listed in
    its image's `labels` group.

    Args:
        container: zarr container (created if missing).
        dataset: the multiscale group; the array is `<dataset>/s0`.
        roi: world ROI the array covers.
        voxel_size: nm per voxel.
        channels: channels of a leading channel axis, or None for no channel axis.
        dtype: numpy dtype name.
        chunks: spatial chunk shape.
        attrs: extra group attributes (under `dacapo`).
        label: a label image (segmentation): integer values, `image-label` metadata.

    """
    spatial = output_shape(roi, voxel_size, 1)[1:]
    shape = spatial if channels is None else (channels, *spatial)
    chunk_shape = tuple(int(c) for c in chunks)
    if channels is not None:
        chunk_shape = (channels, *chunk_shape)
    if check_output(container, dataset, shape, dtype, chunk_shape, voxel_size, roi.begin):
        return zarr.open_group(str(container), mode="r+")[f"{dataset}/s0"]
    # A ledger without its array belongs to an output deleted since: forget it.
    shutil.rmtree(Path(container) / LEDGER_DIR / dataset, ignore_errors=True)
    (array,) = create_image(
        container,
        dataset,
        [ScaleLevel("s0", tuple(float(v) for v in voxel_size), tuple(roi.begin))],
        [shape],
        dtype,
        chunk_shape,
        channels=channels is not None,
        label=label,
        attrs={"dacapo": attrs} if attrs else None,
    )
    return array


class BlockPredictor:
    """Predicts one block (:func:`predict_block`) and writes its region.

    Picklable (it holds paths, not arrays or models) so Dask can ship it to workers;
    each worker opens the arrays and loads the model once.

    Args:
        model: a checkpoint path (loaded per worker) or a live module (in-process only).
        raw: (container, dataset, voxel size, offset) of the input; voxel size and
            offset None: as in the file's metadata.
        output: (container, dataset) of the output multiscale group.
        plan: block shapes.
        grid_roi: the output ROI the blocks tile.
        normalize: raw intensities to network input.
        pad_mode: padding where a block's input leaves the volume.
        dtype: output dtype; uint8 scales `value_range` to 0..255.
        value_range: the activation's range, for uint8 output.
        mirror: test-time augmentation: average the predictions over all axis flips.
        trust_checkpoint: workers build whatever the checkpoint's config names.

    """

    def __init__(
        self,
        model: str | RunModule,
        raw: tuple[str, str, Sequence[float] | None, Sequence[float] | None],
        output: tuple[str, str],
        plan: BlockPlan,
        grid_roi: Roi,
        normalize: Callable[[np.ndarray], np.ndarray],
        pad_mode: str,
        dtype: str,
        value_range: tuple[float, float] = (0.0, 1.0),
        mirror: bool = False,
        trust_checkpoint: bool = False,
    ) -> None:
        self.model = model
        self.raw = raw
        self.output = output
        self.plan = plan
        self.grid_roi = grid_roi
        self.normalize = normalize
        self.pad_mode = pad_mode
        self.dtype = dtype
        self.value_range = value_range
        self.mirror = mirror
        self.trust_checkpoint = trust_checkpoint
        self._arrays: tuple[ZarrArray, zarr.Array] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = None
        if isinstance(self.model, RunModule):
            raise TypeError("a live module cannot go to Dask workers: give a checkpoint path")
        return state

    def _open(self) -> tuple[RunModule, ZarrArray, zarr.Array]:
        module = (
            load_model(self.model, self.trust_checkpoint)
            if isinstance(self.model, str | Path)
            else self.model
        )
        if self._arrays is None:
            container, dataset, vs, off = self.raw
            raw = ZarrArray.open(container, dataset, voxel_size=vs, offset=off)
            out = zarr.open_group(self.output[0], mode="r+")[f"{self.output[1]}/s0"]
            self._arrays = (raw, out)
        return module, *self._arrays

    def __call__(self, block: Block) -> int:
        """Predict and write one block; returns the voxels written."""
        module, raw, out = self._open()
        pred = predict_block(
            module, raw, block, self.plan, self.normalize, self.pad_mode, self.mirror
        )
        region = _write_region(block, self.grid_roi.begin, self.plan.voxel_size)
        pred = pred[(slice(None), *(slice(0, r.stop - r.start) for r in region))]
        out[(slice(None), *region)] = self.convert(pred)
        return int(np.prod(pred.shape[1:]))

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


@dataclass
class PredictJob:
    """A checked prediction, ready to run: nothing has been written yet.

    Made by :func:`plan_prediction`; :meth:`run` creates the output and predicts.
    `record` is what the output records it was made with (model, input,
    parameters); `overwrite` removes an existing output first.
    """

    predictor: BlockPredictor
    module: RunModule
    grid: BlockGrid
    out_container: str
    out_dataset: str
    channels: int
    record: dict[str, Any]
    overwrite: bool = False

    @property
    def plan(self) -> BlockPlan:
        """The block shapes."""
        return self.predictor.plan

    @property
    def roi(self) -> Roi:
        """The world ROI predicted."""
        return self.grid.roi

    def create_output(self) -> zarr.Array:
        """Create (or reopen, to resume) the output array; with `overwrite`, afresh."""
        p = self.predictor
        if self.overwrite:
            remove_output(self.out_container, self.out_dataset)
            self.overwrite = False  # once: a second call reopens what the first made
        return open_output(
            self.out_container,
            self.out_dataset,
            self.roi,
            self.plan.voxel_size,
            self.channels,
            p.dtype,
            self.plan.write_shape,
            {"value_range": list(p.value_range), "dtype": p.dtype, RECORD: self.record},
        )

    def run(
        self,
        workers: int = 1,
        scheduler: str | None = None,
        progress: bool = True,
        devices: Sequence[str] | None = None,
    ) -> PredictResult:
        """Create the output and predict every block not yet done (`devices`: GPUs of workers)."""
        self.create_output()
        ledger = BlockLedger(Path(self.out_container) / LEDGER_DIR / self.out_dataset)
        figures = run_blocks(
            self.predictor,
            list(self.grid),
            ledger,
            workers,
            scheduler,
            "predict",
            progress,
            devices=devices,
        )
        return PredictResult(
            self.out_container,
            self.out_dataset,
            self.roi,
            self.plan.voxel_size,
            len(self.grid),
            int(figures["blocks"]),
            figures["seconds"],
            figures["voxels_per_s"],
        )


def _where(container: str | Path) -> str:
    """A local container as its absolute path (the same from any folder); else as given."""
    path = Path(container)
    return str(path.resolve()) if path.exists() else str(container)


def plan_prediction(
    model: str | Path | RunModule,
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    out_dataset: str,
    roi: Roi | None = None,
    dtype: str = "float32",
    value_range: tuple[float, float] = (0.0, 1.0),
    mirror: bool = False,
    input_shape: Sequence[int] | None = None,
    raw_voxel_size: Sequence[float] | None = None,
    raw_offset: Sequence[float] | None = None,
    overlap: float = 0.5,
    block_shape: Sequence[int] | None = None,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
) -> PredictJob:
    """Check a prediction's inputs and output and plan its blocks; writes nothing.

    Arguments as :func:`predict`.

    Raises:
        FileNotFoundError: a missing checkpoint or input container.
        KeyError: a missing input dataset.
        ValueError: a wrong dtype, voxel size, dimensionality, ROI or shape, an
            output path holding a different array, an output started with another
            model, input or parameters (unless `overwrite`), or a checkpoint whose
            config names a target off the allow-list (unless `trust_checkpoint`).

    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype == "uint8" and not value_range[1] > value_range[0]:
        raise ValueError(f"value_range {tuple(value_range)}: the upper end must exceed the lower")
    if isinstance(model, RunModule):
        module = model
    else:
        if not Path(model).is_file():
            raise FileNotFoundError(f"model checkpoint {str(model)!r} does not exist")
        module = load_model(model, trust_checkpoint)
        model = str(Path(model).resolve())
    cfg = module.hparams["config"]
    meta = module.hparams["meta"]
    raw = ZarrArray.open(raw_container, raw_dataset, voxel_size=raw_voxel_size, offset=raw_offset)
    trained = tuple(float(v) for v in meta["voxel_size"])
    if raw.dims != meta["dims"]:
        raise ValueError(
            f"input {raw.where} has {raw.dims} spatial axes; the model expects {meta['dims']}"
        )
    if not np.allclose(raw.voxel_size, trained):
        raise ValueError(
            f"input {raw.where} has voxel size {raw.voxel_size} nm; the model was trained on "
            f"{trained} nm (pick the matching scale level, or resample the input)"
        )
    plan = BlockPlan.for_module(module, raw.voxel_size, input_shape, overlap, block_shape)
    roi = roi or raw.roi
    if roi.dims != raw.dims:
        raise ValueError(f"roi {roi} has {roi.dims} axes; the input has {raw.dims}")
    if roi.empty() or not raw.roi.contains(roi):
        raise ValueError(
            f"roi {roi} is not a non-empty box inside the input {raw.where} ({raw.roi})"
        )
    for r in (np.subtract(roi.begin, raw.offset), roi.shape):
        steps = np.asarray(r) / raw.voxel_size
        if not np.allclose(steps, np.round(steps)):
            raise ValueError(f"roi {roi} is not on the input's voxel grid ({raw.voxel_size} nm)")
    channels = module.task.num_channels
    predictor = BlockPredictor(
        model,
        (str(raw_container), raw_dataset, raw_voxel_size, raw_offset),
        (str(out_container), out_dataset),
        plan,
        roi,
        # The training's stored values, never re-measured on the volume predicted.
        Normalizer.from_hparams(module.hparams),
        cfg["datasplit"].get("pad_mode", "reflect"),
        dtype,
        (float(value_range[0]), float(value_range[1])),
        mirror,
        trust_checkpoint,
    )
    record = {
        "model sha256": model_sha256(module.state_dict(), dict(module.hparams)),
        "input": f"{_where(raw_container)}:{raw_dataset}",
        "input voxel size": [float(v) for v in raw.voxel_size],
        "input offset": [float(v) for v in raw.offset],
        "roi": {"begin": [float(v) for v in roi.begin], "shape": [float(v) for v in roi.shape]},
        "dtype": dtype,
        "value range": list(predictor.value_range) if dtype == "uint8" else None,
        "mirror": bool(mirror),
        "input shape": list(plan.input_shape),
        "overlap": plan.overlap,
        "block shape": list(plan.write_shape),
    }
    if overwrite:
        check_overwritable(out_container, out_dataset)
    elif check_output(
        out_container,
        out_dataset,
        output_shape(roi, plan.voxel_size, channels),
        dtype,
        (channels, *plan.write_shape),
        plan.voxel_size,
        roi.begin,
    ):
        check_unchanged(out_container, out_dataset, RECORD, record)
    grid = BlockGrid(roi, plan.block_size, plan.context)
    return PredictJob(
        predictor, module, grid, str(out_container), out_dataset, channels, record, overwrite
    )


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
    overlap: float = 0.5,
    block_shape: Sequence[int] | None = None,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
    devices: Sequence[str] | None = None,
) -> PredictResult:
    """Predict `raw` (or its `roi`) blockwise into an OME-NGFF zarr array.

    Everything is checked before anything is written: the model exists (and its
    stored config names only allowed targets), the input exists and has the voxel
    size the model was trained on, the output is absent or the same array started
    with the same model, input and parameters (then only unfinished blocks run).

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
        input_shape: forward-pass input shape in voxels (default: the architecture's
            eval shape); for 'same'-padding networks, the sliding window.
        raw_voxel_size: input voxel size where the file has no metadata.
        raw_offset: input offset where the file has no metadata.
        progress: show a progress bar.
        overlap: sliding-window overlap for 'same'-padding networks (Gaussian blending).
        block_shape: output voxels per block for 'same'-padding networks (see
            :meth:`BlockPlan.for_module`).
        trust_checkpoint: build whatever the checkpoint's stored config names (it
            runs code; see :mod:`dacapo_hydra.trust`).
        overwrite: replace an existing output (and its ledger) instead of resuming it.
        devices: GPUs of the LocalCluster's workers, round-robin (one per worker).

    """
    job = plan_prediction(
        model,
        raw_container,
        raw_dataset,
        out_container,
        out_dataset,
        roi,
        dtype,
        value_range,
        mirror,
        input_shape,
        raw_voxel_size,
        raw_offset,
        overlap,
        block_shape,
        trust_checkpoint,
        overwrite,
    )
    return job.run(workers, scheduler, progress, devices=devices)


def clear_ledger(out_container: str | Path, out_dataset: str) -> None:
    """Forget which blocks finished (the next run redoes all of them)."""
    shutil.rmtree(Path(out_container) / LEDGER_DIR / out_dataset, ignore_errors=True)


def check_overwritable(container: str | Path, dataset: str) -> None:
    """Whether `overwrite` may remove `<container>/<dataset>`; writes nothing.

    Raises:
        ValueError: the dataset is not a group strictly inside the container, or the
            container exists and is not a zarr group.

    """
    root = Path(container).resolve()
    if root not in (root / dataset).resolve().parents:
        raise ValueError(
            f"overwrite: {dataset!r} is not a group inside {container}; nothing to replace"
        )
    if Path(container).exists():
        try:
            zarr.open_group(str(container), mode="r")
        except Exception as err:  # zarr raises several types for a non-zarr folder
            raise ValueError(
                f"output {str(container)!r} exists and is not a zarr group: {err}"
            ) from None


def remove_output(container: str | Path, dataset: str) -> None:
    """Remove an output group and its ledger (checked by :func:`check_overwritable`)."""
    check_overwritable(container, dataset)
    clear_ledger(container, dataset)
    shutil.rmtree(Path(container) / dataset, ignore_errors=True)
