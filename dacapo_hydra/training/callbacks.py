"""Lightning callbacks of a run: the configured ones, and the run's own.

The `callbacks` group lists Lightning callbacks as `_target_` nodes
(:func:`configured_callbacks`: checkpoint policy, learning-rate monitor, progress
bar, early stopping, ...). The run always adds its own: whole-volume validation
with best checkpoints (:class:`WholeVolumeValidation`), snapshots
(:class:`Snapshots`) and `checkpoints/last.ckpt` (:class:`LastCheckpoint`),
which resuming needs.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from mlflow.entities import Metric
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dacapo_hydra import tracking
from dacapo_hydra.config.targets import check_arguments, target_class
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training import distributed
from dacapo_hydra.training.snapshots import snapshot_image
from dacapo_hydra.training.validation import Best, ScoreRow, Validator, params_key

log = logging.getLogger(__name__)


class LastCheckpoint(ModelCheckpoint):
    """The run's own checkpoint: `<dirpath>/last.ckpt`, every `every_n_train_steps`.

    Separate from any configured checkpoint policy (its own class, so its own
    state in Lightning's checkpoints), always `last.ckpt` (no version counter), so
    `resume` finds it whatever the `callbacks` group says. Also saved at the
    last iteration and when SIGTERM stops the run (:meth:`on_exception`).

    Args:
        dirpath: the run's checkpoint folder.
        every_n_train_steps: save every this many iterations (and at the last).

    """

    def __init__(self, dirpath: Path, every_n_train_steps: int) -> None:
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save `last.ckpt` at the final iteration if no periodic save fell on it.

        Also under `fast_dev_run` (Lightning's own checkpointing is off there), so
        a run always ends with a checkpoint of its final weights.
        """
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """On SIGTERM (preemption), save `last.ckpt` so that `resume=true` loses nothing.

        Lightning raises `SIGTERMException` between two batches, where the state is
        whole. Other exceptions save nothing: Ctrl-C may come in the middle of an
        optimiser step, an error may leave weights that are not worth keeping.
        """
        if isinstance(exception, SIGTERMException):
            self.on_train_end(trainer, pl_module)


def configured_callbacks(
    node: Mapping[str, Any],
    checkpoint_dir: Path,
    criterion: str,
    higher_is_better: bool,
    progress_bar: bool = True,
) -> list[pl.Callback]:
    """Instantiate the `callbacks` group's `_target_` nodes, checked first.

    A null entry is skipped. Each target must import and be a `pl.Callback`, and
    take the given arguments. The run fills in what only it knows: a
    `ModelCheckpoint` without `dirpath` writes to the run's checkpoint folder (and
    may not `save_last`: the run keeps `last.ckpt` itself); an `EarlyStopping`
    without `monitor` watches `validation/<criterion>`, and without `mode` follows
    the criterion's direction.

    Args:
        node: the `callbacks` config node, name to `_target_` node.
        checkpoint_dir: the run's checkpoint folder.
        criterion: the task's validation criterion.
        higher_is_better: the criterion's direction.
        progress_bar: false drops progress bars (Lightning's `enable_progress_bar=False`).

    Returns:
        The callbacks, in the node's order.

    Raises:
        ConfigError: naming `callbacks.<name>` (or one of its keys).

    """
    callbacks: list[pl.Callback] = []
    for name, spec in node.items():
        if spec is None:
            continue
        key = f"callbacks.{name}"
        cls = target_class(spec, key, pl.Callback)
        check_arguments(cls, spec.keys(), key, name=str(spec["_target_"]))
        if issubclass(cls, ProgressBar) and not progress_bar:
            continue
        fill: dict[str, Any] = {}
        if issubclass(cls, ModelCheckpoint):
            if spec.get("save_last"):
                raise ConfigError(
                    f"{key}.save_last: the run keeps {checkpoint_dir.name}/last.ckpt itself; "
                    "remove it"
                )
            if spec.get("dirpath") is None:
                fill["dirpath"] = str(checkpoint_dir)
        if issubclass(cls, EarlyStopping):
            if spec.get("monitor") is None:
                fill["monitor"] = f"validation/{criterion}"
            if spec.get("mode") is None:
                fill["mode"] = "max" if higher_is_better else "min"
        try:
            callbacks.append(hydra.utils.instantiate(spec, _convert_="all", **fill))
        except InstantiationException as err:
            cause = err.__cause__ or err
            raise ConfigError(f"{key}: {cause}") from err
    return callbacks


class WholeVolumeValidation(pl.Callback):
    """At each validation: validate on whole volumes, report one parameter set, keep the best.

    The task's criterion picks, at each validation, the parameter set whose mean
    over the datasets is best; `validation/<score>` are that set's scores (every
    score, so they belong together) at step = iteration, and the numeric
    parameters go to `validation/params/<name>`. When the criterion beats every
    earlier validation, the same scores go to `validation/best/<score>`, the record
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
        """Validate, log the chosen set's scores and keep the best.

        With DDP, rank 0 validates and logs while the other ranks wait for its outcome
        (:func:`~dacapo_hydra.training.distributed.on_rank_zero`, no collective timeout); then
        every rank takes part in saving the best checkpoints, which rank 0 writes.
        """
        if trainer.sanity_checking or not self.validator.split.validate:
            return
        score, self.best, improved = distributed.on_rank_zero(
            trainer, "validation", lambda: self._validate(trainer, pl_module)
        )
        for criterion in improved:
            path = self.checkpoint_dir / f"best_{criterion}.ckpt"
            trainer.save_checkpoint(path)
            if trainer.is_global_zero:
                self.client.log_artifact(self.run_id, str(path), "checkpoints")
        if score is not None:
            name = f"validation/{self.default_criterion}"
            pl_module.log(name, score, logger=False, sync_dist=True)

    def _validate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> tuple[float | None, dict[str, Best], list[str]]:
        """Validate and log (rank 0): (chosen score, best records, criteria whose best improved)."""
        iteration = trainer.global_step
        improved: list[str] = []
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
                metrics += _metrics("validation/best", chosen.scores, now, iteration)
            tracking.record_best(
                self.client, self.run_id, criterion, chosen.as_record(), default=default
            )
            if criterion in self.checkpoint_criteria:
                improved.append(criterion)
        for i in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 500])
        self.client.log_text(self.run_id, self.table(), "validation/scores.csv")
        return (current.score if current is not None else None), self.best, improved

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
        self.logged_step = -1

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
        # With gradient accumulation several batches end at one iteration: log the first.
        if self.interval <= 0 or step % self.interval or step == self.logged_step:
            return
        if not trainer.is_global_zero:  # MLflow is rank 0's
            return
        self.logged_step = step
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
