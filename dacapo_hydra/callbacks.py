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
    """At each validation: validate on whole volumes, log every score, keep the best.

    Every score of every (dataset, parameter set) is logged as
    `validation/<dataset>/<params>/<score>`, and per criterion the best parameter
    set's mean over datasets as `validation/<score>`, all at step = iteration.
    When a score improves, its best value goes to the metric `best/<score>`; for
    the task's criterion and those in `checkpoint_criteria`, the record (iteration,
    score, parameters) also goes to the tag `best.<criterion>`, and for those in
    `checkpoint_criteria` the checkpoint is saved as `best_<criterion>.ckpt` and
    logged (what `dacapo-apply` uses). The best records live in Lightning's
    checkpoints, so a resumed run keeps them.

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
        """Validate, log and keep the best."""
        if trainer.sanity_checking or not self.validator.split.validate:
            return
        iteration = trainer.global_step
        rows = self.validator.run(pl_module)
        self.rows += [(iteration, r) for r in rows]
        now = int(time.time() * 1000)
        metrics = [
            Metric(
                f"validation/{r.dataset}/{params_key(r.params)}/{name}", float(v), now, iteration
            )
            for r in rows
            for name, v in r.scores.items()
            if np.isfinite(v)
        ]
        summary = self.validator.summarize(rows, iteration)
        metrics += [Metric(f"validation/{c}", b.score, now, iteration) for c, b in summary.items()]
        for criterion, candidate in summary.items():
            if not self.validator.improves(criterion, candidate, self.best.get(criterion)):
                continue
            self.best[criterion] = candidate
            metrics.append(Metric(f"best/{criterion}", candidate.score, now, iteration))
            if criterion not in self.checkpoint_criteria and criterion != self.default_criterion:
                continue
            tracking.record_best(
                self.client,
                self.run_id,
                criterion,
                candidate.as_record(),
                default=criterion == self.default_criterion,
            )
            if criterion in self.checkpoint_criteria:
                path = self.checkpoint_dir / f"best_{criterion}.ckpt"
                trainer.save_checkpoint(path)
                self.client.log_artifact(self.run_id, str(path), "checkpoints")
        for i in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 500])
        self.client.log_text(self.run_id, self.table(), "validation/scores.csv")
        if self.default_criterion in summary:
            pl_module.log(
                f"validation/{self.default_criterion}",
                summary[self.default_criterion].score,
                logger=False,
            )

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
        self.best = {
            c: Best(r["iteration"], r["score"], r["params"], r.get("per_dataset", {}))
            for c, r in state_dict.get("best", {}).items()
        }


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
