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

The blocks' shapes are in :mod:`~dacapo_hydra.model.plan`, one block's work in
:mod:`~dacapo_hydra.model.predict` and :mod:`~dacapo_hydra.inference.predictor`, the options in
:mod:`~dacapo_hydra.inference.options`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.ome import omero_attrs
from dacapo_hydra.data.output import (
    LEDGER_DIR,
    check_output,
    check_overwritable,
    open_output,
    remove_output,
)
from dacapo_hydra.data.pyramid import write_levels
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.ledgers import BlockLog
from dacapo_hydra.inference.options import Execution, PredictOptions
from dacapo_hydra.inference.predictor import BlockPredictor
from dacapo_hydra.inference.provenance import check_unchanged, model_sha256
from dacapo_hydra.inference.schedule import run_blocks
from dacapo_hydra.model.grid import BlockGrid
from dacapo_hydra.model.load import load_cached
from dacapo_hydra.model.plan import BlockPlan
from dacapo_hydra.model.spec import ModelSpec
from dacapo_hydra.model.trained import TrainedModel

# The record of what made an output (:mod:`dacapo_hydra.inference.provenance`), in `dacapo.<key>`.
RECORD = "made_with"


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
    model: TrainedModel
    grid: BlockGrid
    out_container: str
    out_dataset: str
    channels: int
    record: dict[str, Any]
    overwrite: bool = False
    levels: int = 1

    @property
    def plan(self) -> BlockPlan:
        """The block shapes."""
        return self.predictor.plan

    @property
    def roi(self) -> Roi:
        """The world ROI predicted."""
        return self.grid.roi

    def channel_metadata(self) -> dict[str, Any]:
        """The output's `omero` block: the task's channel names and its value window.

        A uint8 output's window is its stored 0..255, else the task's output range.
        """
        task = self.model.task
        window = (0.0, 255.0) if self.predictor.dtype == "uint8" else task.output_range
        return omero_attrs(task.channel_names, window)

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
            omero=self.channel_metadata(),
        )

    def run(self, execution: Execution | None = None, client: Any = None) -> PredictResult:
        """Create the output and predict every block not yet done.

        `client`: a Dask client shared with the command's other passes (default: one
        for this prediction when `execution` is not in process).
        """
        self.create_output()
        ledger = BlockLog(
            Path(self.out_container) / LEDGER_DIR / self.out_dataset / "blocks.log", self.grid
        )
        figures = run_blocks(self.predictor, self.grid, ledger, execution, "predict", client=client)
        # After s0 is whole: each level reads the one before, chunk by chunk (levels=1
        # removes any an earlier run of other levels left).
        write_levels(self.out_container, self.out_dataset, self.levels)
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
    model: str | Path | TrainedModel,
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    out_dataset: str,
    *,
    options: PredictOptions | None = None,
) -> PredictJob:
    """Check a prediction's inputs and output and plan its blocks; writes nothing.

    Arguments as :func:`predict`.

    Raises:
        FileNotFoundError: a missing checkpoint or input container.
        KeyError: a missing input dataset.
        ValueError: a wrong voxel size, dimensionality, ROI or shape, an output path
            holding a different array, an output started with another model, input
            or parameters (unless `overwrite`), or a checkpoint whose config names a
            target off the allow-list (unless `trust_checkpoint`).

    """
    options = options or PredictOptions()
    trained, model = _loaded(model, options.trust_checkpoint)
    raw = ZarrArray.open(
        raw_container, raw_dataset, voxel_size=options.raw_voxel_size, offset=options.raw_offset
    )
    _check_input(raw, trained.spec)
    shapes = (options.input_shape, options.overlap, options.block_shape, options.window_batch)
    plan = BlockPlan.for_model(trained, raw.voxel_size, *shapes)
    roi = _checked_roi(options.roi or raw.roi, raw)
    # The training's normalisation, never re-measured on the volume predicted.
    normalize, pad_mode = trained.spec.normalizer, trained.spec.pad_mode
    raw_at, out_at = (str(raw_container), raw_dataset), (str(out_container), out_dataset)
    predictor = BlockPredictor(model, raw_at, out_at, plan, roi, normalize, pad_mode, options)
    record = _record(trained, raw, f"{_where(raw_container)}:{raw_dataset}", roi, plan, options)
    channels = trained.task.num_channels
    _check_existing(str(out_container), out_dataset, (channels, roi, plan), options, record)
    grid = BlockGrid(roi, plan.block_size, plan.context)
    return PredictJob(
        predictor,
        trained,
        grid,
        str(out_container),
        out_dataset,
        channels,
        record,
        options.overwrite,
        options.levels,
    )


def _loaded(
    model: str | Path | TrainedModel, trust: bool
) -> tuple[TrainedModel, str | TrainedModel]:
    """The model, and what the block workers get: the live model, or the checkpoint's path.

    Raises:
        FileNotFoundError: a missing checkpoint.

    """
    if isinstance(model, TrainedModel):
        return model, model
    if not Path(model).is_file():
        raise FileNotFoundError(f"model checkpoint {str(model)!r} does not exist")
    return load_cached(model, trust=trust), str(Path(model).resolve())


def _check_existing(
    container: str,
    dataset: str,
    output: tuple[int, Roi, BlockPlan],
    options: PredictOptions,
    record: dict[str, Any],
) -> None:
    """An existing output may be resumed (same array and record) or, with `overwrite`, replaced.

    Raises:
        ValueError: an output holding a different array, or made with another model,
            input or parameters (unless `overwrite`).

    """
    channels, roi, plan = output
    if options.overwrite:
        check_overwritable(container, dataset)
    elif check_output(
        container,
        dataset,
        (channels, *roi.voxel_shape(plan.voxel_size)),
        options.dtype,
        (channels, *plan.write_shape),
        plan.voxel_size,
        roi.begin,
    ):
        check_unchanged(container, dataset, RECORD, record)


def _check_input(raw: ZarrArray, spec: ModelSpec) -> None:
    """The input has the model's axes and voxel size.

    Raises:
        ValueError: it does not, in one line naming both.

    """
    if raw.dims != spec.dims:
        raise ValueError(
            f"input {raw.where} has {raw.dims} spatial axes; the model expects {spec.dims}"
        )
    if not np.allclose(raw.voxel_size, spec.voxel_size):
        raise ValueError(
            f"input {raw.where} has voxel size {raw.voxel_size} nm; the model was trained on "
            f"{spec.voxel_size} nm (pick the matching scale level, or resample the input)"
        )


def _checked_roi(roi: Roi, raw: ZarrArray) -> Roi:
    """`roi`, a non-empty box inside the input and on its voxel grid.

    Raises:
        ValueError: it is not.

    """
    if roi.dims != raw.dims:
        raise ValueError(f"roi {roi} has {roi.dims} axes; the input has {raw.dims}")
    if roi.empty() or not raw.roi.contains(roi):
        raise ValueError(
            f"roi {roi} is not a non-empty box inside the input {raw.where} ({raw.roi})"
        )
    try:
        roi.to_slices(raw.offset, raw.voxel_size)
    except ValueError:
        raise ValueError(
            f"roi {roi} is not on the input's voxel grid ({raw.voxel_size} nm)"
        ) from None
    return roi


def _record(
    model: TrainedModel,
    raw: ZarrArray,
    where: str,
    roi: Roi,
    plan: BlockPlan,
    options: PredictOptions,
) -> dict[str, Any]:
    """What the output records it was made with: model, input, parameters."""
    return {
        "model sha256": model_sha256(model.state_dict(), model.spec.hparams),
        "input": where,
        "input voxel size": [float(v) for v in raw.voxel_size],
        "input offset": [float(v) for v in raw.offset],
        "roi": {"begin": [float(v) for v in roi.begin], "shape": [float(v) for v in roi.shape]},
        "dtype": options.dtype,
        "value range": list(options.value_range) if options.dtype == "uint8" else None,
        "mirror": bool(options.mirror),
        "input shape": list(plan.input_shape),
        "overlap": plan.overlap,
        "block shape": list(plan.write_shape),
    }


def predict(
    model: str | Path | TrainedModel,
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    out_dataset: str,
    *,
    options: PredictOptions | None = None,
    execution: Execution | None = None,
) -> PredictResult:
    """Predict `raw` (or its `options.roi`) blockwise into an OME-NGFF zarr array.

    Everything is checked before anything is written: the model exists (and its
    stored config names only allowed targets), the input exists and has the voxel
    size the model was trained on, the output is absent or the same array started
    with the same model, input and parameters (then only unfinished blocks run).

    Args:
        model: checkpoint path, or a live model (in-process only).
        raw_container: input zarr container.
        raw_dataset: input array or multiscale group inside it.
        out_container: output zarr container (created if missing).
        out_dataset: output group inside it; the array is `<out_dataset>/s0`.
        options: what to predict and how (default: the whole input, float32).
        execution: where the blocks run (default: in this process).

    Example:
        >>> from dacapo_hydra.inference.options import Execution, PredictOptions
        >>> predict(  # doctest: +SKIP
        ...     "model.ckpt", "data/volume.zarr", "raw/s0", "out.zarr", "prediction",
        ...     options=PredictOptions(mirror=True), execution=Execution(workers=2),
        ... ).blocks_done_now
        32

    """
    job = plan_prediction(
        model, raw_container, raw_dataset, out_container, out_dataset, options=options
    )
    return job.run(execution)
