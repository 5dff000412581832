"""Lightning callbacks of a run: the configured ones, and the run's own.

The `callbacks` group lists Lightning callbacks as `_target_` nodes
(:func:`configured_callbacks`: checkpoint policy, learning-rate monitor, progress
bar, early stopping, ...). The run always adds its own: whole-volume validation
(:class:`WholeVolumeValidation`) with a `best_<criterion>.ckpt` per criterion
(:class:`BestCheckpoint`, Lightning's `ModelCheckpoint` on the score it logs),
snapshots (:class:`~dacapo_hydra.training.snapshots.Snapshots`) and
`checkpoints/last.ckpt` (:class:`LastCheckpoint`), which resuming needs.
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
from pytorch_lightning.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dacapo_hydra import tracking
from dacapo_hydra.config.targets import check_arguments, target_class
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.process import distributed
from dacapo_hydra.training.validation import Best, ScoreRow, Validator, params_key

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """The run's own checkpoint: `<dirpath>/last.ckpt`, every `every_n_train_steps`.

    Separate from any configured checkpoint policy and always `last.ckpt`, so
    `resume` finds it whatever the `callbacks` group says. Also saved at the last
    iteration and when SIGTERM stops the run (:meth:`on_exception`). A Lightning
    `Checkpoint`, so the Trainer calls it after the other callbacks; it saves
    through `trainer.save_checkpoint`, which the run's checkpoint plugin writes
    atomically (:class:`~dacapo_hydra.training.checkpoints.AtomicCheckpointIO`).

    Args:
        dirpath: the run's checkpoint folder.
        every_n_train_steps: save every this many iterations (and at the last).

    Attributes:
        last_model_path: the checkpoint saved last ("" before the first save).

    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: Path, every_n_train_steps: int) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self.last_model_path = ""
        # As Lightning's ModelCheckpoint: nothing is saved before the first iteration.
        self._saved_step = 0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Save at every `every_n_train_steps`-th iteration (not under `fast_dev_run`)."""
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        if self.every_n_train_steps >= 1 and trainer.global_step % self.every_n_train_steps == 0:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save `last.ckpt` at the final iteration if no periodic save fell on it.

        Also under `fast_dev_run` (Lightning's own checkpointing is off there), so
        a run always ends with a checkpoint of its final weights.
        """
        self._save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """On SIGTERM (preemption), save `last.ckpt` so that `resume=true` loses nothing.

        Lightning raises `SIGTERMException` between two batches, where the state is
        whole. Other exceptions save nothing: Ctrl-C may come in the middle of an
        optimiser step, an error may leave weights that are not worth keeping.
        """
        if isinstance(exception, SIGTERMException):
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        """`last.ckpt` of the current iteration, unless it is saved already (every rank calls)."""
        if self._saved_step == trainer.global_step:
            return
        path = self.dirpath / self.FILENAME
        trainer.save_checkpoint(path)
        self._saved_step = trainer.global_step
        self.last_model_path = str(path)


class BestCheckpoint(ModelCheckpoint):
    """`<dirpath>/best_<criterion>.ckpt`: the weights of the best validation by one criterion.

    Lightning's `ModelCheckpoint(monitor="validation/<criterion>", save_top_k=1)`
    under a fixed file name, fed by :class:`WholeVolumeValidation`, which logs that
    score at each validation (in `on_validation_epoch_end`, before this callback's
    `on_validation_end`). A validation where no parameter set scored a finite value
    logs nothing new, and saves nothing. Each save is logged to the MLflow run by
    rank 0; the best score lives in Lightning's checkpoints, so a resumed run keeps it.

    Args:
        dirpath: the run's checkpoint folder.
        criterion: the score that picks the best.
        higher_is_better: the score's direction.
        client: an `MlflowClient`.
        run_id: the MLflow run.

    """

    def __init__(
        self, dirpath: Path, criterion: str, higher_is_better: bool, client: Any, run_id: str
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=f"best_{criterion}",
            monitor=f"validation/{criterion}",
            mode="max" if higher_is_better else "min",
            save_top_k=1,
            auto_insert_metric_name=False,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        )
        self.criterion = criterion
        self.client = client
        self.run_id = run_id

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save when the score beats every earlier validation's, and log the file to MLflow."""
        if self.monitor not in trainer.callback_metrics:
            return  # no validation has scored yet
        before = self.best_model_score
        super().on_validation_end(trainer, pl_module)
        if self.best_model_score is not before and trainer.is_global_zero:
            self.client.log_artifact(self.run_id, self.best_model_path, "checkpoints")

    def adopt(self, score: float) -> None:
        """Take `score` as the best so far, kept in `best_<criterion>.ckpt`.

        For a run resumed from a checkpoint that holds the validation's best record
        by this criterion but no state of this callback: the criterion kept no
        checkpoint before the resume (`validation_criteria` changed).
        """
        path = self.format_checkpoint_name({})
        value = torch.tensor(score, dtype=torch.float64)
        self.best_k_models = {path: value}
        self.best_model_path = self.kth_best_model_path = path
        self.best_model_score = self.kth_value = value


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
    earlier validation, the same scores go to `validation/best/<score>` and the
    record (iteration, score, parameters, scores) to the tag `best.<criterion>`.
    Each criterion in `checkpoint_criteria` keeps its own best record, and its
    :class:`BestCheckpoint` (:attr:`checkpoints`, for the Trainer's callbacks)
    saves `best_<criterion>.ckpt` (what `dacapo-apply` uses) from the score this
    callback logs as `validation/<criterion>` (the best set's by that criterion;
    not sent to MLflow). Every (dataset, parameter set) row goes to the artifact
    `validation/scores.csv`. The best records live in Lightning's checkpoints, so
    a resumed run keeps them.

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
        self.checkpoint_criteria = checkpoint_criteria
        self.default_criterion = default_criterion
        self.best: dict[str, Best] = {}
        self.rows: list[tuple[int, ScoreRow]] = []
        directions = validator.directions
        self.checkpoints = (
            [
                BestCheckpoint(Path(checkpoint_dir), c, directions[c], client, run_id)
                for c in dict.fromkeys(checkpoint_criteria)
            ]
            if validator.split.validate
            else []
        )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give each best checkpoint the restored record it lacks (:meth:`BestCheckpoint.adopt`)."""
        for checkpoint in self.checkpoints:
            best = self.best.get(checkpoint.criterion)
            if checkpoint.best_model_score is None and best is not None:
                checkpoint.adopt(best.score)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validate, log the chosen set's scores and keep the best.

        With DDP, rank 0 validates and logs while the other ranks wait for its outcome
        (:func:`~dacapo_hydra.training.process.distributed.on_rank_zero`, no collective timeout);
        then every rank logs the same scores for the best checkpoints, which rank 0 writes.
        """
        if trainer.sanity_checking or not self.validator.split.validate:
            return
        scores, self.best = distributed.on_rank_zero(
            trainer,
            "validation",
            lambda: self._validate(trainer, pl_module),
            lambda found: [found[0], {c: b.as_record() for c, b in found[1].items()}],
            lambda data: (data[0], {c: Best.from_record(r) for c, r in data[1].items()}),
        )
        # float64, as the records compare them: the checkpoints' choice is the records'.
        # Every rank holds the same value, so the "max" over ranks is that value exactly.
        distributed_run = trainer.world_size > 1
        device = pl_module.device if distributed_run else torch.device("cpu")
        for criterion, score in scores.items():
            value = torch.tensor(score, dtype=torch.float64, device=device)
            pl_module.log(
                f"validation/{criterion}",
                value,
                logger=False,
                reduce_fx="max",
                sync_dist=distributed_run,
            )

    def _validate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> tuple[dict[str, float], dict[str, Best]]:
        """Validate and log (rank 0): (each criterion's chosen score, best records)."""
        iteration = trainer.global_step
        rows = self.validator.run(pl_module)
        self.rows += [(iteration, r) for r in rows]
        now = int(time.time() * 1000)
        metrics: list[Metric] = []
        scores: dict[str, float] = {}
        for criterion in dict.fromkeys([self.default_criterion, *self.checkpoint_criteria]):
            chosen = self.validator.best_set(rows, iteration, criterion)
            if chosen is None:
                continue
            scores[criterion] = chosen.score
            default = criterion == self.default_criterion
            if default:
                metrics += _metrics("validation", chosen.scores, now, iteration)
                numeric = {k: v for k, v in chosen.params.items() if isinstance(v, int | float)}
                metrics += _metrics("validation/params", numeric, now, iteration)
                # validation.zarr shows this validation's prediction with its chosen labels.
                self.validator.write_labels(chosen.params)
            if not self.validator.improves(criterion, chosen, self.best.get(criterion)):
                continue
            self.best[criterion] = chosen
            if default:
                metrics += _metrics("validation/best", chosen.scores, now, iteration)
            tracking.record_best(
                self.client, self.run_id, criterion, chosen.as_record(), default=default
            )
        for i in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 500])
        self.client.log_text(self.run_id, self.table(), "validation/scores.csv")
        return scores, self.best

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
