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
from dataclasses import dataclass
from pathlib import Path

from dacapo_hydra import tracking
from dacapo_hydra.data.ome import LABELS_GROUP
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.fragments import Source
from dacapo_hydra.inference.labels import LabelsJob, plan_labels
from dacapo_hydra.inference.options import ApplyOptions, Execution
from dacapo_hydra.inference.predict import PredictJob, plan_prediction
from dacapo_hydra.inference.schedule import open_client
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
    # MLflow is imported only when a run is asked for: a checkpoint needs none of it.
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

    def run(self, execution: Execution | None = None) -> ApplyResult:
        """Predict, then post-process (each skips the blocks an earlier run finished).

        The prediction's Dask workers use `execution.devices`, one GPU each;
        post-processing runs on CPUs.
        """
        execution = execution or Execution()
        started = time.perf_counter()
        cpus = Execution(
            workers=execution.workers, scheduler=execution.scheduler, progress=execution.progress
        )
        if execution.devices:
            # A GPU cluster for the prediction, CPU workers for the labels.
            self.prediction.run(execution)
            predicted = time.perf_counter()
            objects = self.labels.run(cpus)
        else:
            with open_client(execution) as client:  # one cluster for every pass
                self.prediction.run(execution, client)
                predicted = time.perf_counter()
                objects = self.labels.run(cpus, client)
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
    *,
    options: ApplyOptions,
) -> ApplyJob:
    """Check an application and plan it; writes nothing. Arguments as :func:`apply`."""
    if options.run_id is not None:
        model = best_model(options.tracking_uri, options.run_id, options.criterion)
    else:
        model = BestModel(Path(options.checkpoint), dict(options.params), None, None, None)
    prediction = plan_prediction(
        str(model.checkpoint),
        raw_container,
        raw_dataset,
        out_container,
        options.prediction_dataset,
        options=options.prediction,
    )
    task = prediction.model.task
    source = Source(
        str(out_container),
        options.prediction_dataset,
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
        f"{options.prediction_dataset}/{LABELS_GROUP}/{options.labels_name(task.instances)}",
        options.labels,
    )
    return ApplyJob(model, prediction, labels)


def apply(
    raw_container: str | Path,
    raw_dataset: str,
    out_container: str | Path,
    *,
    options: ApplyOptions,
    execution: Execution | None = None,
) -> ApplyResult:
    """Predict a volume with a run's best checkpoint and post-process it with its best params.

    Everything (the run and its record, the model, the input, both outputs) is
    checked before anything is written; a rerun resumes only with the same model,
    input and parameters (`options.prediction.overwrite` starts afresh).

    Args:
        raw_container: input zarr container.
        raw_dataset: input array or multiscale group.
        out_container: output zarr container for both arrays.
        options: the model (`run_id` or `checkpoint` with `params`), the outputs'
            names, post-processing and the prediction's options.
        execution: where the blocks run (default: in this process); its `devices`
            are the prediction's.

    Example:
        >>> from dacapo_hydra.inference.options import ApplyOptions, Execution
        >>> apply(  # doctest: +SKIP
        ...     "data/volume.zarr", "raw/s0", "segmentation.zarr",
        ...     options=ApplyOptions(run_id="<run id>", tracking_uri="sqlite:///outputs/mlflow.db"),
        ...     execution=Execution(workers=4),
        ... ).labels
        ('segmentation.zarr', 'prediction/labels/mask')

    """
    return plan_apply(raw_container, raw_dataset, out_container, options=options).run(execution)
