"""Apply a trained run to a volume: predict blockwise, then post-process with the best parameters.

The run's MLflow record says which parameter set validation found best for a
criterion (:func:`~dacapo_hydra.tracking.read_best`) and holds the checkpoint of
that iteration (`best_<criterion>`). :func:`apply` checks everything (the run and
its record, the model, the input, both outputs) before it writes anything, then
runs :func:`~dacapo_hydra.inference.predict.predict`'s blocks and
:mod:`~dacapo_hydra.inference.labels`' blocks, each resumable. The output container
holds the prediction image and, as its OME-Zarr label image, the post-processed
output: `prediction/` and `prediction/labels/labels/` (or `.../labels/mask/`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dacapo_hydra import tracking
from dacapo_hydra.data.ome import LABELS_GROUP
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.labels import LabelsJob, Source, plan_labels
from dacapo_hydra.inference.predict import PredictJob, plan_prediction
from dacapo_hydra.tasks.base import Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestModel:
    """A checkpoint and the post-processing parameters to use with it."""

    checkpoint: Path
    params: Params
    criterion: str | None
    score: float | None
    iteration: int | None


def best_model(tracking_uri: str, run_id: str, criterion: str | None = None) -> BestModel:
    """The best checkpoint and parameters of an MLflow run for `criterion` (default: the task's).

    Raises:
        FileNotFoundError: no such run, or it lacks the `best_<criterion>` checkpoint.
        KeyError: the run has no validation record for the criterion.

    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        raise FileNotFoundError(f"no MLflow run {run_id!r} in {tracking_uri}") from None
    record = tracking.read_best(tracking_uri, run_id, criterion)
    name = f"best_{record['criterion']}"
    checkpoint = tracking.checkpoint_for_run(tracking_uri, run_id, name)
    return BestModel(
        checkpoint,
        dict(record.get("params") or {}),
        record["criterion"],
        record.get("score"),
        record.get("iteration"),
    )


@dataclass
class ApplyResult:
    """Where prediction and labels went, with the parameters used and the timings.

    `prediction` and `labels` are (container, group): the prediction image, and its
    label image `<prediction>/labels/<name>` (OME-Zarr 0.5, so viewers show it as a
    labels layer over the prediction).
    """

    prediction: tuple[str, str]
    labels: tuple[str, str]
    roi: Roi
    voxel_size: tuple[float, ...]
    params: Params
    criterion: str | None
    objects: int | None
    predict_seconds: float
    labels_seconds: float


@dataclass
class ApplyJob:
    """A checked application: prediction and post-processing plans; nothing written yet."""

    model: BestModel
    prediction: PredictJob
    labels: LabelsJob

    def run(
        self,
        workers: int = 1,
        scheduler: str | None = None,
        progress: bool = True,
        devices: Sequence[str] | None = None,
    ) -> ApplyResult:
        """Predict, then post-process (each skips the blocks an earlier run finished).

        `devices`: the GPUs the prediction's Dask workers use, one each, round-robin;
        post-processing runs on CPUs.
        """
        started = time.perf_counter()
        self.prediction.run(workers, scheduler, progress, devices=devices)
        predicted = time.perf_counter()
        objects = self.labels.run(workers, scheduler, progress)
        return ApplyResult(
            (self.prediction.out_container, self.prediction.out_dataset),
            (self.labels.out_container, self.labels.out_dataset),
            self.prediction.roi,
            self.prediction.plan.voxel_size,
            self.model.params,
            self.model.criterion,
            None if math.isnan(objects) else int(objects),
            predicted - started,
            time.perf_counter() - predicted,
        )


def plan_apply(
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    run_id: str | None = None,
    tracking_uri: str = "sqlite:///outputs/mlflow.db",
    criterion: str | None = None,
    checkpoint: str | Path | None = None,
    params: Params | None = None,
    prediction_dataset: str = "prediction",
    labels_dataset: str | None = None,
    roi: Roi | None = None,
    dtype: str = "float32",
    mirror: bool = False,
    input_shape: Sequence[int] | None = None,
    overlap: float = 0.5,
    block_shape: Sequence[int] | None = None,
    labels_block_shape: Sequence[int] | None = None,
    context: Sequence[int] | None = None,
    connected_components: bool = False,
    raw_voxel_size: Sequence[float] | None = None,
    raw_offset: Sequence[float] | None = None,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
) -> ApplyJob:
    """Check an application and plan it; writes nothing. Arguments as :func:`apply`."""
    if dtype not in ("float32", "float16"):
        raise ValueError(
            f"dtype {dtype!r}: dacapo-apply post-processes the prediction it writes; "
            "use float32 or float16"
        )
    if (run_id is None) == (checkpoint is None):
        raise ValueError("give either an MLflow run id or a checkpoint (with params), not both")
    if run_id is not None:
        model = best_model(tracking_uri, run_id, criterion)
    else:
        if params is None:
            raise ValueError(
                "a checkpoint alone does not say which post-processing parameters to use: "
                "give params (e.g. threshold=0.5), or a run id"
            )
        model = BestModel(Path(checkpoint), dict(params), None, None, None)
    prediction = plan_prediction(
        str(model.checkpoint),
        raw_container,
        raw_dataset,
        out_container,
        prediction_dataset,
        roi,
        dtype,
        (0.0, 1.0),
        mirror,
        input_shape,
        raw_voxel_size,
        raw_offset,
        overlap,
        block_shape,
        trust_checkpoint,
        overwrite,
    )
    task = prediction.module.task
    if labels_dataset is None:
        # A binary output is a mask, never a one-object "labels" image.
        labels_dataset = "labels" if task.instances or connected_components else "mask"
    name = labels_dataset.strip("/")
    if not name:
        raise ValueError("labels_dataset: give the label image a name, e.g. labels")
    source = Source(
        str(out_container),
        prediction_dataset,
        prediction.roi,
        prediction.plan.voxel_size,
        prediction.channels,
        prediction.plan.write_shape,
    )
    labels = plan_labels(
        task,
        model.params,
        source,
        out_container,
        # A label image of the prediction, where OME-Zarr viewers look for its labels.
        f"{prediction_dataset}/{LABELS_GROUP}/{name}",
        labels_block_shape,
        context,
        connected_components,
        overwrite=overwrite,
    )
    return ApplyJob(model, prediction, labels)


def apply(
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    run_id: str | None = None,
    tracking_uri: str = "sqlite:///outputs/mlflow.db",
    criterion: str | None = None,
    checkpoint: str | Path | None = None,
    params: Params | None = None,
    prediction_dataset: str = "prediction",
    labels_dataset: str | None = None,
    roi: Roi | None = None,
    dtype: str = "float32",
    mirror: bool = False,
    input_shape: Sequence[int] | None = None,
    overlap: float = 0.5,
    block_shape: Sequence[int] | None = None,
    labels_block_shape: Sequence[int] | None = None,
    context: Sequence[int] | None = None,
    connected_components: bool = False,
    raw_voxel_size: Sequence[float] | None = None,
    raw_offset: Sequence[float] | None = None,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    devices: Sequence[str] | None = None,
) -> ApplyResult:
    """Predict a volume with a run's best checkpoint and post-process it with its best params.

    Args:
        raw_container: input zarr container.
        raw_dataset: input array or multiscale group.
        out_container: output zarr container for both arrays.
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
        roi: world ROI (default: the whole input).
        dtype: prediction dtype, float32 or float16.
        mirror: test-time mirroring.
        input_shape: forward-pass input shape (voxels).
        overlap: sliding-window overlap of 'same'-padding networks.
        block_shape: prediction block shape ('same'-padding networks).
        labels_block_shape: post-processing block shape (voxels).
        context: voxels post-processing reads beyond each block per side.
        connected_components: label connected components of a binary output.
        raw_voxel_size: input voxel size where the file has no metadata.
        raw_offset: input offset where the file has no metadata.
        trust_checkpoint: build whatever the checkpoint's stored config names (it
            runs code; see :mod:`dacapo_hydra.trust`).
        overwrite: replace existing outputs instead of resuming them (a rerun resumes
            only with the same model, input and parameters).
        workers: Dask LocalCluster workers (1: in this process).
        scheduler: address of a running Dask scheduler.
        progress: show progress bars.
        devices: GPUs of the prediction's LocalCluster workers, round-robin.

    """
    kwargs: dict[str, Any] = dict(locals())
    run_args = {k: kwargs.pop(k) for k in ("workers", "scheduler", "progress", "devices")}
    return plan_apply(**kwargs).run(**run_args)
