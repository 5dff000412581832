"""What a prediction, a labelling or an application is asked to do, and where its blocks run.

One set of options, shared by :func:`~dacapo_hydra.inference.predict.predict`,
:func:`~dacapo_hydra.inference.labels.post_process_blockwise`,
:func:`~dacapo_hydra.inference.apply.apply`, their `plan_*` functions and the
`dacapo-predict`/`dacapo-apply` commands: :class:`PredictOptions` (the prediction),
:class:`LabelsOptions` (the blockwise post-processing), :class:`ApplyOptions` (the
model to apply, with a :class:`PredictOptions` and a :class:`LabelsOptions`),
:class:`Execution` (workers, scheduler, GPUs, progress). Each is frozen and
keyword-only, and checks what it can on its own when made, in one line naming the
option and the value, before any work starts; what needs the model or the data is
checked when the work is planned.

Each option's default is written here once, and its help in the field's metadata
(`help`, with `flag` where the command line names it otherwise): the commands build
their arguments from these fields (:func:`dacapo_hydra.cli.common.option_arguments`).

Nothing heavy is imported here, so the commands' `--help` stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dacapo_hydra.model.plan import OVERLAP, WINDOW_BATCH

if TYPE_CHECKING:
    from dacapo_hydra.data.roi import Roi

# Prediction dtypes; dacapo-apply post-processes what it predicts, so it needs floats.
DTYPES = ("float32", "float16", "uint8")
APPLY_DTYPES = ("float32", "float16")
# What the command-line help says of an option given only by the data or the model.
SAME = "'same'-padding networks: "


def option(default: Any, help: str, **cli: Any) -> Any:
    """A field with its default and its command-line help (and argparse settings).

    `cli` keys: `flag` (the option's name without `--`, default the field's with
    dashes), `metavar`, `choices`.
    """
    return field(default=default, metadata={"help": help, **cli})


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

    Each attribute's help is its field's `help`.

    Example:
        >>> Execution(workers=2, progress=False)
        Execution(workers=2, scheduler=None, devices=None, progress=False)
        >>> Execution(devices=["0", "1"]).workers
        2
        >>> Execution(devices=["0", "1"], scheduler="tcp://10.0.0.5:8786")
        Traceback (most recent call last):
        ...
        ValueError: devices ['0', '1'] start a LocalCluster; with a scheduler each worker uses the GPU its job was given (dask-jobqueue: --gres=gpu:1, processes=1)

    """  # noqa: E501

    workers: int | None = option(
        None,
        "Dask LocalCluster workers (default: one per GPU of devices, else 1: in this process, "
        "two blocks in flight on threads)",
    )
    scheduler: str | None = option(
        None, "address of a running Dask scheduler (e.g. from dask-jobqueue)"
    )
    devices: tuple[str, ...] | None = option(
        None,
        "GPUs of the LocalCluster's workers, e.g. 0,1 or all: worker i sees only GPU "
        "i mod len(GPUS); given, the blocks run on Dask workers even when there is one",
        metavar="GPUS",
    )
    progress: bool = option(True, "show progress bars", flag=None)

    def __post_init__(self) -> None:
        if self.devices is not None:
            if isinstance(self.devices, str):
                raise ValueError(f"devices {self.devices!r}: expected a list of GPUs, e.g. ['0']")
            object.__setattr__(self, "devices", tuple(str(d) for d in self.devices))
        if self.workers is None:
            object.__setattr__(self, "workers", len(self.devices) if self.devices else 1)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int):
            raise ValueError(f"workers {self.workers!r}: expected a whole number")
        if self.workers < 1:
            raise ValueError(f"workers {self.workers}: expected at least 1")
        if self.devices and self.scheduler:
            raise ValueError(
                f"devices {list(self.devices)} start a LocalCluster; with a scheduler each "
                "worker uses the GPU its job was given (dask-jobqueue: --gres=gpu:1, processes=1)"
            )

    @property
    def in_process(self) -> bool:
        """Whether the blocks run in this process (no Dask)."""
        return self.scheduler is None and self.workers <= 1 and not self.devices


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """How to predict: region, output dtype, test-time mirroring, block shapes, safety.

    Each attribute's help is its field's `help`; `block_shape` and `window_batch`
    are those of :meth:`~dacapo_hydra.model.plan.BlockPlan.for_model`, `levels`
    those of :mod:`dacapo_hydra.data.pyramid`.

    Example:
        >>> PredictOptions(dtype="uint8", value_range=(-1, 1), input_shape=[44, 44, 44])
        ... # doctest: +ELLIPSIS
        PredictOptions(roi=None, dtype='uint8', value_range=(-1.0, 1.0), ..., input_shape=(44, 44, 44), ...)
        >>> PredictOptions(dtype="int8")
        Traceback (most recent call last):
        ...
        ValueError: dtype must be one of ('float32', 'float16', 'uint8'), got 'int8'

    """  # noqa: E501

    roi: Roi | None = option(None, "world ROI in nm: z0:z1,y0:y1,x0:x1 (default: the whole input)")
    dtype: str = option("float32", "prediction dtype", choices=DTYPES)
    value_range: tuple[float, float] = option(
        (0.0, 1.0),
        "prediction range mapped to 0..255 for dtype uint8 (distances: -1 1)",
        metavar=("LO", "HI"),
    )
    mirror: bool = option(False, "test-time augmentation: average over flips")
    input_shape: tuple[int, ...] | None = option(
        None,
        "forward-pass input shape, voxels (default: the architecture's eval input shape); "
        "for 'same'-padding networks, the sliding window",
    )
    overlap: float = option(
        OVERLAP, SAME + "sliding-window overlap in [0, 1), blended with Gaussian weights"
    )
    block_shape: tuple[int, ...] | None = option(
        None, SAME + "output voxels per block (a multiple of the stride)"
    )
    window_batch: int = option(
        WINDOW_BATCH, SAME + "windows per forward pass (MONAI's sw_batch_size)"
    )
    raw_voxel_size: tuple[float, ...] | None = option(
        None, "input voxel size (nm) where the input has no metadata", flag="input-voxel-size"
    )
    raw_offset: tuple[float, ...] | None = option(
        None, "input offset (nm) where the input has no metadata", flag="input-offset"
    )
    trust_checkpoint: bool = option(
        False,
        "build whatever the checkpoint's stored config names (it runs code; see "
        "dacapo_hydra.trust)",
    )
    overwrite: bool = option(
        False,
        "replace existing outputs (and their ledgers) instead of resuming them (a rerun "
        "resumes only with the same model, input and parameters)",
    )
    levels: int = option(
        1,
        "scale levels of the outputs, s0 included: each further level halves every axis "
        "(predictions averaged, labels by their most frequent id)",
    )

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
class LabelsOptions:
    """How to post-process a prediction blockwise into labels.

    Each attribute's help is its field's `help`; what needs the prediction (the
    block shape against its chunks, a per-axis length against its axes) is checked
    by :func:`~dacapo_hydra.inference.labels.plan_labels`.

    Example:
        >>> LabelsOptions(block_shape=[64, 64], context=[8, 8]).block_shape
        (64, 64)
        >>> LabelsOptions(context=[-1])
        Traceback (most recent call last):
        ...
        ValueError: context [-1]: expected voxel counts >= 0

    """

    block_shape: tuple[int, ...] | None = option(
        None,
        "post-processing block, voxels: a multiple of the prediction's chunks (default: the "
        "smallest multiple of at least 64 voxels)",
    )
    context: tuple[int, ...] | None = option(
        None,
        "voxels post-processing reads beyond each block per side (default: for watershed "
        "routes a quarter block or four object radii; 0 for connected components, "
        "agglomeration and semantic labels)",
    )
    connected_components: bool = option(
        False, "label connected components of a binary output (instances of a semantic task)"
    )
    merge_fraction: float | None = option(
        None,
        "face IoU that merges fragments of neighbouring blocks (default: any overlap for "
        "connected components, 0.5 for watersheds)",
    )
    overwrite: bool = option(
        False,
        "replace an existing output instead of resuming it (an output resumes only if made "
        "with the same parameters)",
    )
    levels: int | None = option(
        None,
        "scale levels of the label image, s0 included, each further one the most frequent "
        "value of 2 voxels per axis (default: as many as the prediction has, which OME-Zarr "
        "asks of a label image and its image)",
    )

    def __post_init__(self) -> None:
        if self.levels is not None:
            _check_levels(self.levels)
        shape = _numbers(self.block_shape, "block_shape", int, positive=True)
        context = _numbers(self.context, "context", int)
        if context is not None and any(c < 0 for c in context):
            raise ValueError(f"context {list(context)}: expected voxel counts >= 0")
        fraction = self.merge_fraction
        if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise ValueError(f"merge_fraction {fraction!r}: expected a number in (0, 1]")
        object.__setattr__(self, "block_shape", shape)
        object.__setattr__(self, "context", context)


@dataclass(frozen=True, kw_only=True)
class ApplyOptions:
    """Which model to apply and how to post-process, with the prediction's options.

    The model is an MLflow run's best checkpoint for a criterion, post-processed
    with the parameters validation found best for it, or a checkpoint with
    parameters given. The prediction's `overwrite` replaces both outputs instead of
    resuming them, and its `levels` are the label image's too (OME-Zarr pairs a label
    image with its image level by level): `labels` takes both from `prediction`.
    Each attribute's help is its field's `help`.

    Example:
        >>> options = ApplyOptions(checkpoint="model.ckpt", params={"threshold": 0.5})
        >>> options.prediction.dtype, options.labels_name(instances=False)
        ('float32', 'mask')
        >>> ApplyOptions(checkpoint="model.ckpt")
        Traceback (most recent call last):
        ...
        ValueError: a checkpoint alone does not say which post-processing parameters to use: give params (e.g. threshold=0.5), or a run id

    """  # noqa: E501

    run_id: str | None = option(None, "an MLflow run id (its best checkpoint and parameters)")
    tracking_uri: str = option("sqlite:///outputs/mlflow.db", "the MLflow store of the run")
    criterion: str | None = option(
        None, "with a run: the score whose best to use (default: the task's)"
    )
    checkpoint: str | Path | None = option(None, "instead of a run: a checkpoint, with params")
    params: Mapping[str, Any] | None = option(
        None, "with a checkpoint: post-processing parameters, e.g. threshold=0.5"
    )
    prediction_dataset: str = option("prediction", "the prediction's group in the output")
    labels_dataset: str | None = option(
        None,
        "name of the segmentation, an OME-Zarr label image written to "
        "<prediction-dataset>/labels/<name> (default: labels for instances, mask for the "
        "binary output of a semantic task)",
    )
    prediction: PredictOptions = field(default_factory=PredictOptions)
    labels: LabelsOptions = field(default_factory=LabelsOptions)

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
        labels = replace(
            self.labels, overwrite=self.prediction.overwrite, levels=self.prediction.levels
        )
        object.__setattr__(self, "labels", labels)

    def labels_name(self, instances: bool) -> str:
        """The label image's name: as given, else `labels` for instances and `mask` for masks."""
        if self.labels_dataset is not None:
            return self.labels_dataset.strip("/")
        # A binary output is a mask, never a one-object "labels" image.
        return "labels" if instances or self.labels.connected_components else "mask"
