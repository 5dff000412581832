"""What a prediction or an application is asked to do, and where its blocks run.

One set of options, shared by :func:`~dacapo_hydra.inference.predict.predict`,
:func:`~dacapo_hydra.inference.apply.apply`, their `plan_*` functions and the
`dacapo-predict`/`dacapo-apply` commands: :class:`PredictOptions` (the prediction),
:class:`ApplyOptions` (the model to apply, post-processing, and a
:class:`PredictOptions`), :class:`Execution` (workers, scheduler, GPUs, progress).
Each is frozen and keyword-only, and checks what it can on its own when made, in
one line naming the option and the value, before any work starts; what needs the
model or the data is checked when the work is planned.

Nothing heavy is imported here, so the commands' `--help` stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dacapo_hydra.data.roi import Roi

# Prediction dtypes; dacapo-apply post-processes what it predicts, so it needs floats.
DTYPES = ("float32", "float16", "uint8")
APPLY_DTYPES = ("float32", "float16")


def _numbers(
    value: Sequence[float] | None, name: str, cast: type, positive: bool = False
) -> tuple[Any, ...] | None:
    """`value` as a tuple of `cast` (None stays None), refusing non-numbers and NaN."""
    if value is None:
        return None
    try:
        out = tuple(cast(v) for v in value)
        exact = cast is float or all(o == v for o, v in zip(out, value, strict=True))
    except (TypeError, ValueError):
        exact = False
    if isinstance(value, str) or not exact or any(math.isnan(o) for o in out):
        kind = "whole numbers" if cast is int else "numbers"
        raise ValueError(f"{name} {value!r}: expected a list of {kind}")
    if positive and any(o <= 0 for o in out):
        raise ValueError(f"{name} {list(out)}: expected positive values")
    return out


def _check_levels(levels: Any) -> None:
    """Scale levels are a whole number, at least 1 (`s0` alone)."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels {levels!r}: expected a whole number >= 1 (1: s0 alone)")


@dataclass(frozen=True, kw_only=True)
class Execution:
    """Where the blocks run: in this process, on a Dask LocalCluster, or on a scheduler.

    Attributes:
        workers: Dask LocalCluster workers; 1 runs in this process, two blocks in
            flight on threads.
        scheduler: address of a running Dask scheduler (e.g. one dask-jobqueue
            started on SLURM), instead of a LocalCluster.
        devices: GPUs of the LocalCluster's workers, round-robin, each worker seeing
            one (:func:`dacapo_hydra.devices.worker_device`); given, the blocks run
            on `workers` Dask workers even when `workers` is 1.
        progress: show progress bars.

    Example:
        >>> Execution(workers=2, progress=False)
        Execution(workers=2, scheduler=None, devices=None, progress=False)
        >>> Execution(devices=["0", "1"], scheduler="tcp://10.0.0.5:8786")
        Traceback (most recent call last):
        ...
        ValueError: devices ['0', '1'] start a LocalCluster; with a scheduler each worker uses the GPU its job was given

    """  # noqa: E501

    workers: int = 1
    scheduler: str | None = None
    devices: tuple[str, ...] | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int):
            raise ValueError(f"workers {self.workers!r}: expected a whole number")
        if self.workers < 1:
            raise ValueError(f"workers {self.workers}: expected at least 1")
        if self.devices is not None:
            if isinstance(self.devices, str):
                raise ValueError(f"devices {self.devices!r}: expected a list of GPUs, e.g. ['0']")
            object.__setattr__(self, "devices", tuple(str(d) for d in self.devices))
        if self.devices and self.scheduler:
            raise ValueError(
                f"devices {list(self.devices)} start a LocalCluster; with a scheduler each "
                "worker uses the GPU its job was given"
            )

    @property
    def in_process(self) -> bool:
        """Whether the blocks run in this process (no Dask)."""
        return self.scheduler is None and self.workers <= 1 and not self.devices


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """How to predict: region, output dtype, test-time mirroring, block shapes, safety.

    Attributes:
        roi: world ROI to predict (default: the whole input).
        dtype: float32, float16 or uint8.
        value_range: the activation's range, scaled to 0..255 for uint8.
        mirror: average over mirrored inputs (test-time augmentation).
        input_shape: forward-pass input shape in voxels (default: the
            architecture's eval shape); for 'same'-padding networks, the sliding window.
        overlap: sliding-window overlap of 'same'-padding networks (Gaussian
            blending), in [0, 1).
        block_shape: output voxels per block for 'same'-padding networks (see
            :meth:`~dacapo_hydra.inference.plan.BlockPlan.for_module`).
        window_batch: windows per forward pass for 'same'-padding networks (MONAI's
            `sw_batch_size`; see :meth:`~dacapo_hydra.inference.plan.BlockPlan.for_module`).
        raw_voxel_size: input voxel size (nm) where the file has no metadata.
        raw_offset: input offset (nm) where the file has no metadata.
        trust_checkpoint: build whatever the checkpoint's stored config names (it
            runs code; see :mod:`dacapo_hydra.trust`).
        overwrite: replace an existing output (and its ledger) instead of resuming it.
        levels: scale levels of the output image, `s0` included: each further level
            is the one before averaged over 2 voxels per axis, written after `s0`
            (:mod:`dacapo_hydra.data.pyramid`).

    Example:
        >>> PredictOptions(dtype="uint8", value_range=(-1, 1), input_shape=[44, 44, 44])
        ... # doctest: +ELLIPSIS
        PredictOptions(roi=None, dtype='uint8', value_range=(-1.0, 1.0), ..., input_shape=(44, 44, 44), ...)
        >>> PredictOptions(dtype="int8")
        Traceback (most recent call last):
        ...
        ValueError: dtype must be one of ('float32', 'float16', 'uint8'), got 'int8'

    """  # noqa: E501

    roi: Roi | None = None
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    mirror: bool = False
    input_shape: tuple[int, ...] | None = None
    overlap: float = 0.5
    block_shape: tuple[int, ...] | None = None
    window_batch: int = 2
    raw_voxel_size: tuple[float, ...] | None = None
    raw_offset: tuple[float, ...] | None = None
    trust_checkpoint: bool = False
    overwrite: bool = False
    levels: int = 1

    def __post_init__(self) -> None:
        _check_levels(self.levels)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        value_range = _numbers(self.value_range, "value_range", float) or ()
        if len(value_range) != 2:
            raise ValueError(f"value_range {self.value_range!r}: expected two numbers, LO HI")
        if self.dtype == "uint8" and not value_range[1] > value_range[0]:
            raise ValueError(f"value_range {value_range}: the upper end must exceed the lower")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        batch = self.window_batch
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"window_batch must be a whole number >= 1, got {batch!r}")
        for name, value in (
            ("value_range", value_range),
            ("input_shape", _numbers(self.input_shape, "input_shape", int, positive=True)),
            ("block_shape", _numbers(self.block_shape, "block_shape", int, positive=True)),
            ("raw_voxel_size", _numbers(self.raw_voxel_size, "raw_voxel_size", float, True)),
            ("raw_offset", _numbers(self.raw_offset, "raw_offset", float)),
        ):
            object.__setattr__(self, name, value)


@dataclass(frozen=True, kw_only=True)
class ApplyOptions:
    """Which model to apply and how to post-process, with the prediction's options.

    The model is an MLflow run's best checkpoint for a criterion, post-processed
    with the parameters validation found best for it, or a checkpoint with
    parameters given.

    Attributes:
        run_id: the MLflow run (its `best_<criterion>` checkpoint and parameters).
        tracking_uri: the MLflow store of the run.
        criterion: the score whose best is used (default: the task's criterion).
        checkpoint: instead of a run: a checkpoint path, with `params`.
        params: with `checkpoint`: the post-processing parameters.
        prediction_dataset: output group of the prediction.
        labels_dataset: name of the post-processed output, an OME-Zarr label image of
            the prediction written to `<prediction_dataset>/labels/<labels_dataset>`
            (default: `labels` for instances, from an instance task or
            `connected_components`; `mask` for the binary masks of a semantic task).
        labels_block_shape: post-processing block shape (voxels).
        context: voxels post-processing reads beyond each block per side.
        connected_components: label connected components of a binary output.
        prediction: the prediction's options (dtype float32 or float16); its
            `overwrite` replaces both outputs instead of resuming them, and its
            `levels` are the label image's too (OME-Zarr pairs a label image with its
            image level by level).

    Example:
        >>> options = ApplyOptions(checkpoint="model.ckpt", params={"threshold": 0.5})
        >>> options.prediction.dtype, options.labels_name(instances=False)
        ('float32', 'mask')
        >>> ApplyOptions(checkpoint="model.ckpt")
        Traceback (most recent call last):
        ...
        ValueError: a checkpoint alone does not say which post-processing parameters to use: give params (e.g. threshold=0.5), or a run id

    """  # noqa: E501

    run_id: str | None = None
    tracking_uri: str = "sqlite:///outputs/mlflow.db"
    criterion: str | None = None
    checkpoint: str | Path | None = None
    params: Mapping[str, Any] | None = None
    prediction_dataset: str = "prediction"
    labels_dataset: str | None = None
    labels_block_shape: tuple[int, ...] | None = None
    context: tuple[int, ...] | None = None
    connected_components: bool = False
    prediction: PredictOptions = field(default_factory=PredictOptions)

    def __post_init__(self) -> None:
        if self.prediction.dtype not in APPLY_DTYPES:
            raise ValueError(
                f"dtype {self.prediction.dtype!r}: dacapo-apply post-processes the prediction "
                "it writes; use float32 or float16"
            )
        if (self.run_id is None) == (self.checkpoint is None):
            raise ValueError("give either an MLflow run id or a checkpoint (with params), not both")
        if self.checkpoint is not None and self.params is None:
            raise ValueError(
                "a checkpoint alone does not say which post-processing parameters to use: "
                "give params (e.g. threshold=0.5), or a run id"
            )
        if self.run_id is not None and self.params is not None:
            raise ValueError("params go with a checkpoint; a run brings its best parameters")
        if self.labels_dataset is not None and not self.labels_dataset.strip("/"):
            raise ValueError("labels_dataset: give the label image a name, e.g. labels")
        if self.params is not None:
            object.__setattr__(self, "params", dict(self.params))
        shape = _numbers(self.labels_block_shape, "labels_block_shape", int, positive=True)
        object.__setattr__(self, "labels_block_shape", shape)
        object.__setattr__(self, "context", _numbers(self.context, "context", int))

    def labels_name(self, instances: bool) -> str:
        """The label image's name: as given, else `labels` for instances and `mask` for masks."""
        if self.labels_dataset is not None:
            return self.labels_dataset.strip("/")
        # A binary output is a mask, never a one-object "labels" image.
        return "labels" if instances or self.connected_components else "mask"
