"""Validation on whole volumes: predict, post-process over the task's grid, evaluate.

Each validation dataset's labelled region is predicted blockwise by the code
`dacapo-predict` runs (:func:`~dacapo_hydra.predict.predict_roi`: same plan, grid
and blending), in this process and in memory (validation volumes are small),
optionally written to zarr for viewing. The
task post-processes the prediction with every parameter set of its grid and
scores the result against the ground truth.
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

from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.module import RunModule
from dacapo_hydra.predict import BlockPlan, open_output, predict_roi
from dacapo_hydra.tasks.base import Params, Task

log = logging.getLogger(__name__)


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
    """The best result so far for one criterion."""

    iteration: int
    score: float
    params: Params
    per_dataset: dict[str, float] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """A JSON-able record (for MLflow tags)."""
        return {
            "iteration": self.iteration,
            "score": self.score,
            "params": self.params,
            "per_dataset": self.per_dataset,
        }


class Validator:
    """Validates a module on every validation dataset of a datasplit.

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

    def roi(self, dataset: Dataset, voxel_size: Sequence[float]) -> Roi:
        """The region validated: labelled and covered by raw, on the output grid."""
        roi = dataset.labelled_roi.intersect(dataset.raw.roi)
        vs = np.asarray(voxel_size)
        first = np.ceil((np.asarray(roi.begin) - dataset.gt.offset) / vs - 1e-6)
        last = np.floor((np.asarray(roi.end) - dataset.gt.offset) / vs + 1e-6)
        begin = np.asarray(dataset.gt.offset) + first * vs
        return Roi(tuple(begin.tolist()), tuple(((last - first) * vs).tolist()))

    def predict(self, module: RunModule, dataset: Dataset) -> tuple[Roi, np.ndarray]:
        """The prediction of one dataset's validated region, written to zarr if asked."""
        plan = BlockPlan.for_module(module, dataset.raw.voxel_size, self.input_shape)
        roi = self.roi(dataset, plan.voxel_size)
        if roi.empty():
            raise ValueError(f"validation dataset {dataset.name}: no labelled region inside raw")
        pred = predict_roi(
            module, dataset.raw, roi, self.split.normalize, self.split.pad_mode, self.input_shape
        )
        if self.out_container is not None:
            name = f"{dataset.name}/prediction"
            shutil.rmtree(self.out_container / dataset.name / "prediction", ignore_errors=True)
            array = open_output(
                self.out_container,
                name,
                roi,
                plan.voxel_size,
                pred.shape[0],
                "float32",
                pred.shape[1:],
            )
            array[...] = pred
        return roi, pred

    def run(self, module: RunModule) -> list[ScoreRow]:
        """Scores of every (dataset, parameter set)."""
        rows = []
        was_training = module.training
        module.eval()
        try:
            for dataset in self.split.validate:
                roi, pred = self.predict(module, dataset)
                gt = dataset.gt.read(roi)
                mask = dataset.mask.read(roi) if dataset.mask is not None else None
                for params in self.task.parameter_grid():
                    output = self.task.post_process(pred, params)
                    scores = self.task.evaluate(output, gt, mask)
                    rows.append(ScoreRow(dataset.name, dict(params), scores))
        finally:
            module.train(was_training)
        return rows

    def summarize(self, rows: Sequence[ScoreRow], iteration: int) -> dict[str, Best]:
        """Per criterion, the best parameter set by its mean score over datasets."""
        by_params: dict[str, list[ScoreRow]] = {}
        for row in rows:
            by_params.setdefault(params_key(row.params), []).append(row)
        best: dict[str, Best] = {}
        for criterion, higher in self.directions.items():
            for group in by_params.values():
                values = [r.scores.get(criterion, math.nan) for r in group]
                if any(not math.isfinite(v) for v in values):
                    continue
                mean = float(np.mean(values))
                current = best.get(criterion)
                if current is None or (mean > current.score if higher else mean < current.score):
                    best[criterion] = Best(
                        iteration,
                        mean,
                        group[0].params,
                        {r.dataset: r.scores[criterion] for r in group},
                    )
        return best

    def improves(self, criterion: str, new: Best, old: Best | None) -> bool:
        """Whether `new` beats `old` for `criterion`."""
        if old is None:
            return True
        return new.score > old.score if self.directions[criterion] else new.score < old.score
