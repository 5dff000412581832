"""The train verb: a run built from its config, trained by Lightning, recorded in MLflow.

:func:`train` builds the run's parts (:func:`~dacapo_hydra.training.build.build`:
everything the config names is opened and checked before an MLflow run exists),
starts or joins the run's processes (:mod:`dacapo_hydra.training.process.launch`),
opens or resumes the MLflow run (:class:`~dacapo_hydra.training.session.MlflowSession`,
which also ends it KILLED or FAILED when training raises), and fits Lightning's
Trainer with the configured callbacks and the run's own (:func:`run_callbacks`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from dacapo_hydra import tracking
from dacapo_hydra.config.lightning import trainer_arguments
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.training import stopping
from dacapo_hydra.training.build import Built, build, tracking_store
from dacapo_hydra.training.callbacks import (
    LastCheckpoint,
    WholeVolumeValidation,
    configured_callbacks,
)
from dacapo_hydra.training.checkpoints import with_atomic_io
from dacapo_hydra.training.process import launch, stops
from dacapo_hydra.training.process.distributed import World
from dacapo_hydra.training.process.resume import OptimizerSettings, check_data
from dacapo_hydra.training.process.signals import SignalStop, StopSignals
from dacapo_hydra.training.process.start_point import Start, start_point
from dacapo_hydra.training.session import MlflowSession
from dacapo_hydra.training.snapshots import Snapshots
from dacapo_hydra.training.validation import Validator

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_id: str
    run_name: str
    experiment_id: str
    tracking_uri: str
    iterations: int
    final_loss: float
    val_loss: float | None
    checkpoint: str
    run_dir: str
    seconds: float
    criterion: str
    best_score: float | None
    best_iteration: int | None
    best_params: dict[str, Any] | None


def _checkpoint_criteria(cfg: DictConfig, task: Task) -> list[str]:
    """The criteria that keep a best checkpoint (default: the task's), checked."""
    criteria = list(cfg.validation_criteria or [task.criterion])
    directions = task.score_directions()
    for criterion in criteria:
        if criterion not in directions:
            raise ConfigError(
                f"validation_criteria: {criterion!r} is not a score of the task; "
                f"expected some of {sorted(directions)}"
            )
    return criteria


def train(cfg: DictConfig) -> TrainResult:
    """Train the run `cfg` describes, recorded as one MLflow run; return its figures.

    With `resume`, the same MLflow run continues from its newest intact checkpoint
    (iteration counter, optimiser and best-validation records included) up to
    `iterations`; changed settings are recorded, or refused
    (:mod:`dacapo_hydra.training.process.resume`).

    Raises:
        ConfigError: bad input, before an MLflow run exists (or, resuming, is touched).
        stops.RunInterrupted: SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 stopped training; the
            run is KILLED (:mod:`dacapo_hydra.training.process.stops`, :mod:`~.signals`).
        stops.RunFailed: a fault one line names: a tracking server that does not answer
            (before anything starts), a full disk (the run is FAILED). Any other
            exception marks the run FAILED too.

    With several devices (`lightning.devices`, `lightning.num_nodes`) it trains with
    DDP (:mod:`dacapo_hydra.training.process.launch`): one MLflow run, recorded by rank 0.

    """
    # Lightning's Trainer arguments (and below, the callbacks) are checked before a run exists.
    arguments = trainer_arguments(cfg)
    try:  # a tracking server that is not there: one line in seconds, before any work
        tracking.check_reachable(tracking_store(cfg)[0])
    except tracking.TrackingUnreachable as err:
        raise stops.RunFailed(str(err)) from None
    with StopSignals.installed() as stopper:
        try:
            with launch.processes(cfg, arguments) as world:
                return _train(cfg, arguments, world, stopper)
        except SignalStop as stop:  # before the MLflow run was opened
            raise stops.RunInterrupted(
                stop.signal_name,
                f"stopped by {stop.signal_name} before training started: nothing to continue",
            ) from None


@dataclass
class RunCallbacks:
    """The Trainer's callbacks, and those of the run's own whose state the run reads back.

    Attributes:
        all: every callback, in the Trainer's order.
        validation: whole-volume validation (its best records).
        last: `last.ckpt` (its path).

    """

    all: list[pl.Callback]
    validation: WholeVolumeValidation
    last: LastCheckpoint


def checked_callbacks(
    cfg: DictConfig, arguments: dict[str, Any], task: Task, checkpoint_dir: Path
) -> list[pl.Callback]:
    """The `callbacks` group's and the budget's callbacks, checked before a run exists."""
    configured = configured_callbacks(
        cfg.callbacks,
        checkpoint_dir,
        task.criterion,
        task.score_directions()[task.criterion],
        progress_bar=arguments.get("enable_progress_bar") is not False,
    )
    return [*configured, *stopping.stop_callbacks(cfg.get("budget"), task.criterion, configured)]


def run_callbacks(
    cfg: DictConfig,
    start: Start,
    built: Built,
    session: MlflowSession,
    checked: list[pl.Callback],
    criteria: list[str],
    signals: list[pl.Callback],
) -> RunCallbacks:
    """The Trainer's callbacks: the checked ones, the run's own, and the signals' (`signals`).

    `criteria` keep a best checkpoint each. Snapshots are rank 0's; the optimiser
    settings a resume changed are applied on start.
    """
    task = built.task
    checkpoint_dir = start.checkpoint_dir
    validator = Validator(
        built.split, task, start.run_dir / "validation.zarr" if cfg.write_validation else None
    )
    validation = WholeVolumeValidation(
        validator,
        session.client,
        session.run_id,
        checkpoint_dir,
        criteria,
        task.criterion,
    )
    last = LastCheckpoint(checkpoint_dir, cfg.validation_interval)
    callbacks = [*checked, validation, *validation.checkpoints, last, *signals]
    if start.changes:
        callbacks.append(OptimizerSettings(start.changes))
    if cfg.snapshot_interval > 0 and session.is_zero:
        callbacks.append(
            Snapshots(session.client, session.run_id, cfg.snapshot_interval, built.split.dims)
        )
    return RunCallbacks(callbacks, validation, last)


def _build(cfg: DictConfig, world: World, start: Start) -> Built:
    """The run's parts; rank 0 builds first (it may write synthetic data the others read).

    A resumed run draws other crops than the run it continues (a seed of its own).
    """
    resume = start.resume
    data_seed = (
        cfg.seed
        if resume is None
        else int(np.random.SeedSequence([cfg.seed, resume.iteration]).generate_state(1)[0])
    )
    # The other ranks' start weights are rank 0's: DDP copies them when it wraps the module.
    return world.rank_zero_first(
        "build",
        lambda: build(
            cfg if world.is_zero else launch.without_start(cfg),
            data_seed=data_seed,
            tracking_uri=start.uri,
        ),
    )


def _trainer(
    cfg: DictConfig, arguments: dict[str, Any], session: MlflowSession, callbacks: RunCallbacks
) -> pl.Trainer:
    """Lightning's Trainer of the run, which owns the steps, validation interval and logger."""
    # Lightning's val_check_interval counts batches; an iteration is an optimiser step.
    batches_per_validation = cfg.validation_interval * arguments.get("accumulate_grad_batches", 1)
    return pl.Trainer(
        **arguments,
        plugins=with_atomic_io(arguments),
        max_steps=cfg.iterations,
        val_check_interval=batches_per_validation,
        check_val_every_n_epoch=None,
        logger=session.logger,
        callbacks=callbacks.all,
        default_root_dir=str(session.start.run_dir),
    )


def _fit(
    cfg: DictConfig, trainer: pl.Trainer, built: Built, start: Start, session: MlflowSession
) -> stopping.Stop:
    """Fit (from the resumed checkpoint, if any); why training stopped."""
    session.record_params(trainer, built.datamodule.loader_workers)
    trainer.fit(
        built.module,
        datamodule=built.datamodule,
        ckpt_path=str(start.resume.checkpoint) if start.resume else None,
    )
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    why = stopping.stop_reason(trainer, cfg.iterations, cfg.get("budget"))
    session.finish(trainer, why)
    return why


def _train(
    cfg: DictConfig, arguments: dict[str, Any], world: World, stopper: StopSignals
) -> TrainResult:
    """One process's part of the run: start point, parts, MLflow session, fit, result."""
    started = time.time()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    start = start_point(cfg, world, *tracking_store(cfg))
    built = _build(cfg, world, start)
    criteria = _checkpoint_criteria(cfg, built.task)
    if start.resume is not None:
        check_data(start.resume, built.split.dims, built.split.in_channels)
    checked = checked_callbacks(cfg, arguments, built.task, start.checkpoint_dir)
    stop = stops.StopReason()
    session = MlflowSession(cfg, world, start, lambda err: _signal_name(err, stop, stopper))
    trainer: pl.Trainer | None = None
    callbacks: RunCallbacks | None = None
    try:
        with session:
            session.record_start(built.task)
            callbacks = run_callbacks(
                cfg, start, built, session, checked, criteria, [stop, stopper]
            )
            trainer = _trainer(cfg, arguments, session, callbacks)
            why = _fit(cfg, trainer, built, start, session)
    except BaseException as err:
        last = callbacks.last.last_model_path if callbacks is not None else ""
        _stopped(err, session, world, trainer, last)
    result = _result(trainer, callbacks, start, session, built.task, time.time() - started)
    if world.is_zero:
        print(_summary(result, why, session))
    return result


def _signal_name(err: BaseException, stop: stops.StopReason, stopper: StopSignals) -> str | None:
    """The stop signal that ended training with `err`; None for an error."""
    signal_name = stops.stop_signal(err, stop.seen)
    if signal_name == "SIGTERM":  # Lightning stops the same way for SIGUSR1/2
        signal_name = stopper.received or signal_name
    return signal_name


def _stopped(
    err: BaseException,
    session: MlflowSession,
    world: World,
    trainer: pl.Trainer | None,
    last_checkpoint: str,
) -> NoReturn:
    """Raise what ended the run (its MLflow status set): one line for a signal or a known fault.

    Raises:
        stops.RunFailed: a fault one line names (a full disk, a lost rank).
        stops.RunInterrupted: a stop signal.

    """
    name, run_id, signal_name = session.start.name, session.run_id, session.signal_name
    at = f" at iteration {trainer.global_step}" if trainer is not None else ""
    fault = None if signal_name else stops.failure_line(err) or world.lost_rank()
    if fault is not None:
        raise stops.RunFailed(
            f"run {name} ({run_id}) failed{at}: {fault}: MLflow status FAILED; after "
            f"fixing it, continue the run with resume=true (or resume={run_id})"
        ) from err
    if signal_name is None:
        raise err
    saved = f"; last checkpoint {last_checkpoint}" if last_checkpoint else ""
    raise stops.RunInterrupted(
        signal_name,
        f"run {name} ({run_id}) stopped by {signal_name}{at}: MLflow status KILLED{saved}; "
        f"continue it with resume=true (or resume={run_id})",
    ) from None


def _result(
    trainer: pl.Trainer,
    callbacks: RunCallbacks,
    start: Start,
    session: MlflowSession,
    task: Task,
    seconds: float,
) -> TrainResult:
    """The figures of a run that finished."""
    metrics = trainer.callback_metrics
    best = callbacks.validation.best.get(task.criterion)
    return TrainResult(
        run_id=session.run_id,
        run_name=start.name,
        experiment_id=session.experiment_id,
        tracking_uri=start.uri,
        iterations=trainer.global_step,
        final_loss=float(metrics.get("train/loss", math.nan)),
        val_loss=float(metrics["val/loss"]) if "val/loss" in metrics else None,
        checkpoint=str(Path(callbacks.last.last_model_path).resolve()),
        criterion=task.criterion,
        best_score=best.score if best else None,
        best_iteration=best.iteration if best else None,
        best_params=best.params if best else None,
        run_dir=str(start.run_dir.resolve()),
        seconds=seconds,
    )


def _summary(result: TrainResult, why: stopping.Stop, session: MlflowSession) -> str:
    """The closing line of a finished run: figures, best validation, why it stopped, where."""
    best = (
        f", best {result.criterion} {result.best_score:.4g} at iteration "
        f"{result.best_iteration} with {result.best_params}"
        if result.best_score is not None
        else ""
    )
    val_loss = f", val/loss {result.val_loss:.4g}" if result.val_loss is not None else ""
    return (
        f"dacapo: run {result.run_name} ({result.run_id}) finished {result.iterations} "
        f"iterations in {result.seconds:.0f}s: train/loss {result.final_loss:.4g}{val_loss}{best}"
        f"; stopped: {why.line}; checkpoint {result.checkpoint}; view with: mlflow ui "
        f"--backend-store-uri {result.tracking_uri} and open {session.ui_url()}"
        + session.waiting_note()
    )
