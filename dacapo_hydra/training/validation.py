"""Validation on whole volumes: predict, post-process over the task's grid, evaluate.

Each validation dataset's labelled region is predicted blockwise by the code
`dacapo-predict` runs (:func:`~dacapo_hydra.model.predict.predict_roi`: same plan, grid
and blending), in this process and in memory (validation volumes are small),
optionally written to zarr for viewing (`<run dir>/validation.zarr`: each
dataset's `prediction` image, its channels named by the task, and under it the
label image of the parameter set chosen, `prediction/labels/<labels | mask>`,
rewritten at every validation). The task post-processes the prediction
with every parameter set of its grid (:meth:`~dacapo_hydra.tasks.base.Task.post_process_grid`,
which shares work between sets) and scores the result against the ground truth.

What a validation reports is one parameter set: the one whose mean criterion over
the datasets is best (:meth:`Validator.best_set`), with all of that set's scores,
so the precision, recall and F1 shown together were reached together.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dacapo_hydra.data.checks import holds_object
from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.ome import LABELS_GROUP, omero_attrs
from dacapo_hydra.data.output import open_output
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.errors import DataError
from dacapo_hydra.model.plan import BlockPlan
from dacapo_hydra.model.predict import predict_roi
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.tasks.base import Params, Task
from dacapo_hydra.training.module import RunModule

log = logging.getLogger(__name__)

# Each validation dataset's prediction in the run's validation zarr: `<dataset>/prediction`.
PREDICTION = "prediction"


def _trained(model: TrainedModel | RunModule) -> TrainedModel:
    """The trained model (the one a LightningModule in training wraps)."""
    return model.model if isinstance(model, RunModule) else model


def params_key(params: Params) -> str:
    """A stable, MLflow-safe name for a parameter set, e.g. `threshold_0.5`."""
    return "__".join(f"{k}_{v}" for k, v in sorted(params.items())) or "default"


@dataclass
class ScoreRow:
    """The scores of one dataset post-processed with one parameter set."""

    dataset: str
    params: Params
    scores: dict[str, float]


@dataclass
class Best:
    """One (iteration, parameter set) picked by a criterion, with all its scores.

    Attributes:
        iteration: the training iteration.
        score: the criterion's mean over the validation datasets.
        params: the post-processing parameter set.
        per_dataset: the criterion on each dataset.
        scores: every score of this set, each the mean over the datasets.

    """

    iteration: int
    score: float
    params: Params
    per_dataset: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """A JSON-able record (for MLflow tags and checkpoints)."""
        return {
            "iteration": self.iteration,
            "score": self.score,
            "params": self.params,
            "per_dataset": self.per_dataset,
            "scores": self.scores,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Best:
        """The inverse of :meth:`as_record`."""
        return cls(
            int(record["iteration"]),
            float(record["score"]),
            dict(record["params"]),
            dict(record.get("per_dataset", {})),
            dict(record.get("scores", {})),
        )


class Validator:
    """Validates a trained model on every validation dataset of a datasplit.

    Args:
        split: the opened datasplit (its `validate` datasets are used).
        task: post-processes and evaluates.
        out_container: where predictions are written for viewing (None: not written).
        input_shape: block input shape (default: the architecture's eval shape).

    """

    def __init__(
        self,
        split: DataSplit,
        task: Task,
        out_container: str | Path | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        self.split = split
        self.task = task
        self.out_container = Path(out_container) if out_container else None
        self.input_shape = input_shape
        self.directions = task.score_directions()
        # The predictions written to `out_container`: dataset name -> (roi, voxel size).
        self._written: dict[str, tuple[Roi, tuple[float, ...]]] = {}

    def roi(self, dataset: Dataset, voxel_size: Sequence[float]) -> Roi:
        """The region validated: labelled and covered by raw, on the output grid."""
        roi = dataset.labelled_roi.intersect(dataset.raw.roi)
        vs = np.asarray(voxel_size)
        first = np.ceil((np.asarray(roi.begin) - dataset.gt.offset) / vs - 1e-6)
        last = np.floor((np.asarray(roi.end) - dataset.gt.offset) / vs + 1e-6)
        begin = np.asarray(dataset.gt.offset) + first * vs
        return Roi(tuple(begin.tolist()), tuple(((last - first) * vs).tolist()))

    def predict(self, model: TrainedModel | RunModule, dataset: Dataset) -> tuple[Roi, np.ndarray]:
        """The prediction of one dataset's validated region, written to zarr if asked."""
        model = _trained(model)
        plan = BlockPlan.for_model(model, dataset.raw.voxel_size, self.input_shape)
        roi = self.roi(dataset, plan.voxel_size)
        if roi.empty():
            raise ValueError(f"validation dataset {dataset.name}: no labelled region inside raw")
        pred = predict_roi(
            model, dataset.raw, roi, self.split.normalize, self.split.pad_mode, self.input_shape
        )
        if self.out_container is not None:
            name = f"{dataset.name}/{PREDICTION}"
            shutil.rmtree(self.out_container / dataset.name / PREDICTION, ignore_errors=True)
            array = open_output(
                self.out_container,
                name,
                roi,
                plan.voxel_size,
                pred.shape[0],
                "float32",
                pred.shape[1:],
                omero=omero_attrs(self.task.channel_names, self.task.output_range),
            )
            array[...] = pred
            self._written[dataset.name] = (roi, tuple(plan.voxel_size))
        return roi, pred

    def write_labels(self, params: Params) -> list[str]:
        """Post-process each written prediction with `params` into its label image.

        The labels (or a semantic task's masks) go to `<dataset>/prediction/labels/
        <labels | mask>` of the validation zarr, a label image of the prediction
        (`image-label.source`), as `dacapo-apply` writes them, so a viewer opens the
        prediction with the chosen parameter set's output over it. Returns the groups
        written (none when predictions are not written).
        """
        written: list[str] = []
        for dataset_name, (roi, voxel_size) in self._written.items():
            image = f"{dataset_name}/{PREDICTION}"
            pred = zarr.open_group(str(self.out_container), mode="r")[f"{image}/s0"][...]
            output = np.asarray(self.task.post_process(pred, params))
            dims = len(voxel_size)
            kind = "labels" if self.task.instances else "mask"
            dtype = np.dtype(np.uint64) if self.task.instances else output.dtype
            dtype = np.dtype(np.uint8) if dtype.kind == "b" else dtype
            name = f"{image}/{LABELS_GROUP}/{kind}"
            shutil.rmtree(self.out_container / name, ignore_errors=True)
            channels = output.shape[0] if output.ndim == dims + 1 else None
            array = open_output(
                self.out_container,
                name,
                roi,
                voxel_size,
                channels,
                dtype.name,
                output.shape[-dims:],
                {"post_process": dict(params)},
                label=dtype.kind in "iu",
            )
            array[...] = output.astype(dtype)
            written.append(name)
        return written

    def run(self, model: TrainedModel | RunModule) -> list[ScoreRow]:
        """Scores of every (dataset, parameter set), of a trained model or the one in training."""
        model = _trained(model)
        rows = []
        was_training = model.training
        model.eval()
        try:
            for dataset in self.split.validate:
                roi, pred = self.predict(model, dataset)
                gt = dataset.gt.read(roi)
                mask = dataset.mask.read(roi) if dataset.mask is not None else None
                if not holds_object(gt, mask, dataset.gt.dims):
                    # Empty against empty scores a perfect dice, whatever the model.
                    raise DataError(
                        f"validation dataset {dataset.name}: the ground truth "
                        f"{dataset.gt.where} holds no object in {roi}; it can't be scored"
                    )
                for params, output in self.task.post_process_grid(pred):
                    scores = self.task.evaluate(output, gt, mask)
                    rows.append(ScoreRow(dataset.name, dict(params), scores))
        finally:
            model.train(was_training)
        return rows

    def best_set(self, rows: Sequence[ScoreRow], iteration: int, criterion: str) -> Best | None:
        """The parameter set with the best mean `criterion` over datasets, with all its scores.

        Sets where the criterion is not finite on some dataset are passed over; ties
        go to the first set in the task's grid. None if no set has a finite value.
        """
        higher = self.directions[criterion]
        by_params: dict[str, list[ScoreRow]] = {}
        for row in rows:
            by_params.setdefault(params_key(row.params), []).append(row)
        best: Best | None = None
        for group in by_params.values():
            values = [r.scores.get(criterion, math.nan) for r in group]
            if any(not math.isfinite(v) for v in values):
                continue
            mean = float(np.mean(values))
            if best is None or (mean > best.score if higher else mean < best.score):
                names = set.intersection(*(set(r.scores) for r in group))
                best = Best(
                    iteration,
                    mean,
                    dict(group[0].params),
                    {r.dataset: r.scores[criterion] for r in group},
                    {n: float(np.mean([r.scores[n] for r in group])) for n in sorted(names)},
                )
        return best

    def improves(self, criterion: str, new: Best, old: Best | None) -> bool:
        """Whether `new` beats `old` for `criterion`."""
        if old is None:
            return True
        return new.score > old.score if self.directions[criterion] else new.score < old.score
