"""The train verb: a run built from its config, trained by Lightning, recorded in MLflow.

:func:`train` builds the run's parts (:func:`~dacapo_hydra.training.build.build`:
everything the config names is opened and checked before an MLflow run exists),
starts or joins the run's processes (:mod:`dacapo_hydra.training.launch`), opens
or resumes the MLflow run, and fits Lightning's Trainer with the configured
callbacks and the run's own (:mod:`dacapo_hydra.training.callbacks`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.loggers.logger import DummyLogger

from dacapo_hydra import tracking
from dacapo_hydra.config.lightning import trainer_arguments
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.model.load import stored_state
from dacapo_hydra.planning.record import record_config
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.training import launch, stopping, stops
from dacapo_hydra.training.build import build, tracking_store
from dacapo_hydra.training.callbacks import (
    LastCheckpoint,
    WholeVolumeValidation,
    configured_callbacks,
)
from dacapo_hydra.training.checkpoints import newest_intact, resume_candidates, with_atomic_io
from dacapo_hydra.training.distributed import World
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.resume import (
    OptimizerSettings,
    ResumePoint,
    changed_settings,
    check_data,
    from_start_record,
    record_resume,
    refuse_meaningless,
    start_record,
)
from dacapo_hydra.training.run_dir import new_run_dir
from dacapo_hydra.training.signals import SignalStop, StopSignals
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


def _run_dir(cfg: DictConfig, name: str) -> Path:
    """Hydra's job folder, or a fresh one of the run's own (never shared, see run_dir)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return new_run_dir(cfg.paths.output_dir, name)


def _resume_point(cfg: DictConfig, uri: str, name: str) -> ResumePoint | None:
    """The run to resume and its newest intact checkpoint, or None for a new run.

    A requeued SLURM job without `resume` continues the unfinished run that trained
    in its folder.
    """
    resume = cfg.resume
    if resume is None and launch.requeued():
        resume = launch.requeued_run(uri, cfg.mlflow.experiment_name, _run_dir(cfg, name))
        if resume is not None:
            log.info("requeued job: continuing run %s", resume)
    if resume in (None, False):
        return None
    run_id = None if resume is True else str(resume)
    found = tracking.resumable_run(uri, cfg.mlflow.experiment_name, name, run_id, resume_candidates)
    if found is None:
        if run_id is not None:
            raise ConfigError(f"resume={run_id}: no such MLflow run with a checkpoint")
        log.info("resume: no unfinished run named %s with a checkpoint; starting a new run", name)
        return None
    run_id, folder = found
    intact = newest_intact(folder)
    if intact is None:
        raise ConfigError(f"resume: no checkpoint in {folder} loads (each is named above)")
    checkpoint, state = intact
    config, meta = stored_state(state)
    return ResumePoint(
        run_id=run_id,
        checkpoint=checkpoint,
        iteration=int(state["global_step"]),
        config=config,
        meta=meta,
    )


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


def _run_logger(uri: str, **kwargs: Any) -> MLFlowLogger:
    """Lightning's MLflow logger of the run, its metrics written off the training thread.

    `synchronous=False`: Lightning's metric writes go to MLflow's async queue, so a
    training step never waits on the store (a sqlite write takes tens of ms). Ending the
    run (`set_terminated`, which Lightning's `finalize` calls) drains the queue first.
    """
    return MLFlowLogger(tracking_uri=uri, log_model=False, synchronous=False, **kwargs)


def _new_run_logger(
    cfg: DictConfig, uri: str, artifacts: str, name: str, choices: dict[str, str], run_dir: Path
) -> MLFlowLogger:
    """A logger for a new MLflow run, tagged with the group choices (and sweep parent)."""
    tags = {**choices, "run_dir": str(run_dir.resolve())}
    parent = tracking.parent_run_id()
    if parent:
        tags["mlflow.parentRunId"] = parent
    return _run_logger(
        uri,
        experiment_name=cfg.mlflow.experiment_name,
        run_name=name,
        tags=tags,
        artifact_location=artifacts,
    )


def _start_point(cfg: DictConfig, uri: str, name: str) -> tuple[ResumePoint | None, Path]:
    """The run to resume (or None) and the run folder; rank 0 finds them for every rank."""
    resume = _resume_point(cfg, uri, name)
    return resume, (resume.checkpoint.parent.parent if resume is not None else _run_dir(cfg, name))


def train(cfg: DictConfig) -> TrainResult:
    """Train the run `cfg` describes, recorded as one MLflow run; return its figures.

    With `resume`, the same MLflow run continues from its newest intact checkpoint
    (iteration counter, optimiser and best-validation records included) up to
    `iterations`; changed settings are recorded, or refused (:mod:`dacapo_hydra.training.resume`).

    Raises:
        ConfigError: bad input, before an MLflow run exists (or, resuming, is touched).
        stops.RunInterrupted: SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 stopped training; the
            run is KILLED (:mod:`dacapo_hydra.training.stops`, :mod:`~.signals`).
        stops.RunFailed: a fault one line names: a tracking server that does not answer
            (before anything starts), a full disk (the run is FAILED). Any other
            exception marks the run FAILED too.

    With several devices (`lightning.devices`, `lightning.num_nodes`) it trains with
    DDP (:mod:`dacapo_hydra.training.launch`): one MLflow run, recorded by rank 0.

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


def _train(
    cfg: DictConfig, arguments: dict[str, Any], world: World, stopper: StopSignals
) -> TrainResult:
    started = time.time()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    choices = tracking.group_choices(cfg)
    name = tracking.run_name(cfg, choices)
    uri, artifacts = tracking_store(cfg)
    resume, run_dir = world.from_rank_zero(
        "start", lambda: _start_point(cfg, uri, name), start_record, from_start_record
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    changes = changed_settings(resume.config, config) if resume and resume.config else {}
    if resume is not None:
        refuse_meaningless(changes, resume.checkpoint)
    data_seed = (
        cfg.seed
        if resume is None
        else int(np.random.SeedSequence([cfg.seed, resume.iteration]).generate_state(1)[0])
    )
    # The other ranks' start weights are rank 0's: DDP copies them when it wraps the module.
    built = world.rank_zero_first(
        "build",
        lambda: build(
            cfg if world.is_zero else launch.without_start(cfg),
            data_seed=data_seed,
            tracking_uri=uri,
        ),
    )
    task = built.task
    criteria = _checkpoint_criteria(cfg, task)
    if resume is not None:
        check_data(resume, built.split.dims, built.split.in_channels)
    checkpoint_dir = run_dir / "checkpoints"
    configured = configured_callbacks(
        cfg.callbacks,
        checkpoint_dir,
        task.criterion,
        task.score_directions()[task.criterion],
        progress_bar=arguments.get("enable_progress_bar") is not False,
    )
    stoppers = stopping.stop_callbacks(cfg.get("budget"), task.criterion, configured)
    opened: list[tuple[str, MLFlowLogger]] = []

    def open_run() -> str:
        experiment = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name, artifacts)
        if resume is not None:
            logger = _run_logger(uri, run_id=resume.run_id)
        else:
            logger = _new_run_logger(cfg, uri, artifacts, name, choices, run_dir)
        opened.append((experiment, logger))
        return str(logger.run_id)

    # MLflow is rank 0's; the others get the run id and log nothing (DummyLogger).
    run_id = world.from_rank_zero("run", open_run)
    experiment_id, logger = opened[0] if world.is_zero else ("", DummyLogger())
    # A tracking server that goes away mid-run: writes wait in the run folder (offline).
    client = tracking.install_offline(logger, uri, run_id, run_dir) if world.is_zero else None
    # Parameters are written at once (a conflicting value fails here, not in a log line).
    params = MLFlowLogger(tracking_uri=uri, run_id=run_id) if world.is_zero else None
    last = LastCheckpoint(checkpoint_dir, cfg.validation_interval)
    stop = stops.StopReason()
    trainer: pl.Trainer | None = None
    try:
        recorder = None
        if world.is_zero:
            recorder = tracking.RunRecorder.start(
                cfg, uri, run_id, task, resumed=resume is not None
            )
        if resume is None and world.is_zero:
            # Flattened with Hydra's `.` (Lightning's own would use `/`), as tags are.
            record_config(params, client, run_id, config, tracking.flatten)
        elif world.is_zero:
            number = record_resume(client, resume, config, changes)
            log.info(
                "resume %d of run %s from %s (iteration %d); changed: %s",
                number,
                run_id,
                resume.checkpoint,
                resume.iteration,
                ", ".join(changes) or "nothing",
            )
        validator = Validator(
            built.split, task, run_dir / "validation.zarr" if cfg.write_validation else None
        )
        validation = WholeVolumeValidation(
            validator, client, run_id, checkpoint_dir, criteria, task.criterion
        )
        callbacks = [*configured, *stoppers, validation, *validation.checkpoints, last, stop]
        callbacks.append(stopper)
        if changes:
            callbacks.append(OptimizerSettings(changes))
        if cfg.snapshot_interval > 0 and world.is_zero:
            callbacks.append(Snapshots(client, run_id, cfg.snapshot_interval, built.split.dims))
        # Lightning's val_check_interval counts batches; an iteration is an optimiser step.
        batches_per_validation = cfg.validation_interval * arguments.get(
            "accumulate_grad_batches", 1
        )
        plugins = with_atomic_io(arguments)
        trainer = pl.Trainer(
            **arguments,
            plugins=plugins,
            max_steps=cfg.iterations,
            val_check_interval=batches_per_validation,
            check_val_every_n_epoch=None,
            logger=logger,
            callbacks=callbacks,
            default_root_dir=str(run_dir),
        )
        if resume is None and world.is_zero:
            workers = built.datamodule.loader_workers(trainer)
            params.log_hyperparams(launch.run_params(trainer, cfg.trainer.batch_size, workers))
        trainer.fit(
            built.module,
            datamodule=built.datamodule,
            ckpt_path=str(resume.checkpoint) if resume else None,
        )
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        why = stopping.stop_reason(trainer, cfg.iterations, cfg.get("budget"))
        if world.is_zero:
            if logger not in trainer.loggers:
                # fast_dev_run trains with a stand-in logger; the MLflow run is ended here.
                logger.finalize("success")
            client.set_tag(run_id, stopping.TAG, why.tag)
            client.log_artifacts(run_id, str(checkpoint_dir), "checkpoints")
            load = partial(RunModule.from_checkpoint, trust=True)
            tracking.finish_model(client, recorder, checkpoint_dir, load)
    except BaseException as err:
        signal_name = stops.stop_signal(err, stop.seen)
        if signal_name == "SIGTERM":  # Lightning stops the same way for SIGUSR1/2
            signal_name = stopper.received or signal_name
        if isinstance(err, KeyboardInterrupt):  # outside fit: Lightning did not see it
            stops.release_interrupted(err)
        if world.is_zero:
            if signal_name is not None:
                client.set_tag(run_id, stopping.TAG, f"signal:{signal_name}")
            client.set_terminated(run_id, "FAILED" if signal_name is None else "KILLED")
        at = f" at iteration {trainer.global_step}" if trainer is not None else ""
        fault = None if signal_name else stops.failure_line(err) or world.lost_rank()
        if fault is not None:
            raise stops.RunFailed(
                f"run {name} ({run_id}) failed{at}: {fault}: MLflow status FAILED; after "
                f"fixing it, continue the run with resume=true (or resume={run_id})"
            ) from err
        if signal_name is None:
            raise
        saved = f"; last checkpoint {last.last_model_path}" if last.last_model_path else ""
        raise stops.RunInterrupted(
            signal_name,
            f"run {name} ({run_id}) stopped by {signal_name}{at}: MLflow status KILLED{saved}; "
            f"continue it with resume=true (or resume={run_id})",
        ) from None
    metrics = trainer.callback_metrics
    final_loss = float(metrics.get("train/loss", math.nan))
    val_loss = float(metrics["val/loss"]) if "val/loss" in metrics else None
    best = validation.best.get(task.criterion)
    result = TrainResult(
        run_id=run_id,
        run_name=name,
        experiment_id=experiment_id,
        tracking_uri=uri,
        iterations=trainer.global_step,
        final_loss=final_loss,
        val_loss=val_loss,
        checkpoint=str(Path(last.last_model_path).resolve()),
        criterion=task.criterion,
        best_score=best.score if best else None,
        best_iteration=best.iteration if best else None,
        best_params=best.params if best else None,
        run_dir=str(run_dir.resolve()),
        seconds=time.time() - started,
    )
    if not world.is_zero:
        return result
    print(
        f"dacapo: run {name} ({run_id}) finished {result.iterations} iterations in "
        f"{result.seconds:.0f}s: train/loss {final_loss:.4g}"
        + (f", val/loss {val_loss:.4g}" if val_loss is not None else "")
        + (
            f", best {task.criterion} {best.score:.4g} at iteration {best.iteration} "
            f"with {best.params}"
            if best
            else ""
        )
        + f"; stopped: {why.line}"
        + f"; checkpoint {result.checkpoint}; view with: mlflow ui --backend-store-uri {uri}"
        + f" and open {tracking.ui_url(experiment_id, run_id)}"
        + tracking.waiting_note(client)
    )
    return result
