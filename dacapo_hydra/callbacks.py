"""Lightning callbacks of a run: whole-volume validation with best checkpoints, snapshots."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from mlflow.entities import Metric

from dacapo_hydra import tracking
from dacapo_hydra.snapshots import snapshot_image
from dacapo_hydra.validation import Best, ScoreRow, Validator, params_key

log = logging.getLogger(__name__)


class WholeVolumeValidation(pl.Callback):
    """At each validation: validate on whole volumes, report one parameter set, keep the best.

    The task's criterion picks, at each validation, the parameter set whose mean
    over the datasets is best; `validation/<score>` are that set's scores (every
    score, so they belong together) at step = iteration, and the numeric
    parameters go to `validation/params/<name>`. When the criterion beats every
    earlier validation, the same scores go to `best/<score>`, the record
    (iteration, score, parameters, scores) to the tag `best.<criterion>`, and the
    checkpoint to `best_<criterion>.ckpt` (what `dacapo-apply` uses). Each other
    criterion in `checkpoint_criteria` keeps its own best record and checkpoint.
    Every (dataset, parameter set) row goes to the artifact `validation/scores.csv`.
    The best records live in Lightning's checkpoints, so a resumed run keeps them.

    Args:
        validator: validates a module.
        client: an `MlflowClient`.
        run_id: the MLflow run.
        checkpoint_dir: where best checkpoints are saved.
        checkpoint_criteria: criteria that keep a best checkpoint.
        default_criterion: the task's criterion (tagged `criterion`).

    """

    def __init__(
        self,
        validator: Validator,
        client: Any,
        run_id: str,
        checkpoint_dir: Path,
        checkpoint_criteria: list[str],
        default_criterion: str,
    ) -> None:
        self.validator = validator
        self.client = client
        self.run_id = run_id
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_criteria = checkpoint_criteria
        self.default_criterion = default_criterion
        self.best: dict[str, Best] = {}
        self.rows: list[tuple[int, ScoreRow]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validate, log the chosen set's scores and keep the best."""
        if trainer.sanity_checking or not self.validator.split.validate:
            return
        iteration = trainer.global_step
        rows = self.validator.run(pl_module)
        self.rows += [(iteration, r) for r in rows]
        now = int(time.time() * 1000)
        metrics: list[Metric] = []
        current: Best | None = None
        for criterion in dict.fromkeys([self.default_criterion, *self.checkpoint_criteria]):
            chosen = self.validator.best_set(rows, iteration, criterion)
            if chosen is None:
                continue
            default = criterion == self.default_criterion
            if default:
                current = chosen
                metrics += _metrics("validation", chosen.scores, now, iteration)
                numeric = {k: v for k, v in chosen.params.items() if isinstance(v, int | float)}
                metrics += _metrics("validation/params", numeric, now, iteration)
            if not self.validator.improves(criterion, chosen, self.best.get(criterion)):
                continue
            self.best[criterion] = chosen
            if default:
                metrics += _metrics("best", chosen.scores, now, iteration)
            tracking.record_best(
                self.client, self.run_id, criterion, chosen.as_record(), default=default
            )
            if criterion in self.checkpoint_criteria:
                path = self.checkpoint_dir / f"best_{criterion}.ckpt"
                trainer.save_checkpoint(path)
                self.client.log_artifact(self.run_id, str(path), "checkpoints")
        for i in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 500])
        self.client.log_text(self.run_id, self.table(), "validation/scores.csv")
        if current is not None:
            pl_module.log(f"validation/{self.default_criterion}", current.score, logger=False)

    def table(self) -> str:
        """Every score logged so far, as CSV."""
        names = sorted({n for _, r in self.rows for n in r.scores})
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["iteration", "dataset", "params", *names])
        for iteration, r in self.rows:
            writer.writerow(
                [iteration, r.dataset, params_key(r.params), *(r.scores.get(n, "") for n in names)]
            )
        return buffer.getvalue()

    def state_dict(self) -> dict[str, Any]:
        """The best records, saved in Lightning checkpoints."""
        return {"best": {c: b.as_record() for c, b in self.best.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the best records from a checkpoint."""
        self.best = {c: Best.from_record(r) for c, r in state_dict.get("best", {}).items()}


def _metrics(prefix: str, values: dict[str, float], now: int, step: int) -> list[Metric]:
    """MLflow metrics `<prefix>/<name>` for the finite values."""
    return [
        Metric(f"{prefix}/{name}", float(v), now, step)
        for name, v in values.items()
        if np.isfinite(v)
    ]


class Snapshots(pl.Callback):
    """Every `interval` iterations, log a PNG of one training sample to MLflow.

    The image holds central slices of raw, ground truth, target, prediction and
    weights; MLflow shows it under the run's images with a step slider.
    """

    def __init__(self, client: Any, run_id: str, interval: int, dims: int) -> None:
        self.client = client
        self.run_id = run_id
        self.interval = interval
        self.dims = dims

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Log a snapshot at multiples of `interval`."""
        step = trainer.global_step
        if self.interval <= 0 or step % self.interval:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            prediction = pl_module.predict(batch["raw"][:1])[0]
        pl_module.train(was_training)
        image = snapshot_image(
            batch["raw"][0].float().cpu().numpy(),
            batch["gt"][0].cpu().numpy(),
            batch["target"][0].float().cpu().numpy(),
            prediction.float().cpu().numpy(),
            batch["weight"][0].float().cpu().numpy(),
            self.dims,
        )
        self.client.log_image(self.run_id, image, key="snapshot", step=step)
