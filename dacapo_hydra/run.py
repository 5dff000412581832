"""From a composed config to Lightning objects, and a training run recorded in MLflow.

Everything the config names is opened and checked in :func:`build` before an
MLflow run exists, so bad input fails with one message and leaves no run behind.
No task- or data-specific branching here: each room builds its own objects.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger

from dacapo_hydra import tracking
from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.data.datamodule import VolumeDataModule
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.module import RunModule
from dacapo_hydra.starts import load_weights
from dacapo_hydra.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass
class Built:
    """The objects a run is made of."""

    split: DataSplit
    architecture: Architecture
    task: Task
    module: RunModule
    datamodule: VolumeDataModule


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


def build(cfg: DictConfig) -> Built:
    """Open the datasplit and build architecture, task, module and data module.

    Raises:
        ConfigError: for any bad input, with the key or file at fault named.

    """
    try:
        return _build(cfg)
    except ConfigError:
        raise
    except InstantiationException as err:
        # Hydra wraps the constructor's error; its message is the one that names the key.
        cause = err.__cause__ or err
        raise ConfigError(str(cause.args[0] if cause.args else cause)) from err
    except (ValueError, KeyError, FileNotFoundError, TypeError) as err:
        raise ConfigError(str(err.args[0] if err.args else repr(err))) from err


def _build(cfg: DictConfig) -> Built:
    for key in ("iterations", "validation_interval"):
        if cfg[key] < 1:
            raise ValueError(f"{key} must be at least 1, got {cfg[key]}")
    split = DataSplit.from_config(cfg.datasplit)
    architecture: Architecture = hydra.utils.instantiate(
        cfg.architecture, dims=split.dims, in_channels=split.in_channels
    )
    task: Task = hydra.utils.instantiate(cfg.task, dims=split.dims, voxel_size=split.gt_voxel_size)
    optimizer = hydra.utils.instantiate(cfg.trainer.optimizer)
    scheduler = hydra.utils.instantiate(cfg.trainer.scheduler) if cfg.trainer.scheduler else None
    config = OmegaConf.to_container(cfg, resolve=True)
    meta = {
        "dims": split.dims,
        "in_channels": split.in_channels,
        "voxel_size": list(split.voxel_size),
        "gt_voxel_size": list(split.gt_voxel_size),
    }
    module = RunModule(architecture, task, optimizer, scheduler, config=config, meta=meta)
    if cfg.start:
        load_weights(module, cfg.start)
    datamodule = VolumeDataModule.build(
        split, architecture, task, cfg.trainer, cfg.seed, cfg.validation_samples
    )
    return Built(split, architecture, task, module, datamodule)


def module_from_checkpoint(path: str | Path) -> RunModule:
    """Rebuild a trained module from a checkpoint alone (no data is opened).

    The checkpoint holds the composed config and the data facts the network was
    built for (dims, channels, voxel sizes); the weights are loaded strictly.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    hparams = state.get("hyper_parameters", {})
    if "config" not in hparams or "meta" not in hparams:
        raise ValueError(
            f"{path} is not a dacapo-hydra checkpoint (no config/meta hyper-parameters)"
        )
    cfg = OmegaConf.create(hparams["config"])
    meta = hparams["meta"]
    architecture = hydra.utils.instantiate(
        cfg.architecture, dims=meta["dims"], in_channels=meta["in_channels"]
    )
    task = hydra.utils.instantiate(cfg.task, dims=meta["dims"], voxel_size=meta["gt_voxel_size"])
    optimizer = hydra.utils.instantiate(cfg.trainer.optimizer)
    module = RunModule(architecture, task, optimizer, None, config=hparams["config"], meta=meta)
    module.load_state_dict(state["state_dict"])
    return module.eval()


def _run_dir(cfg: DictConfig, name: str) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return Path(cfg.paths.output_dir) / "runs" / f"{stamp}_{name}"


def train(cfg: DictConfig) -> TrainResult:
    """Train the run `cfg` describes, recorded as one MLflow run; return its figures."""
    started = time.time()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    built = build(cfg)
    choices = tracking.group_choices(cfg)
    name = tracking.run_name(cfg, choices)
    run_dir = _run_dir(cfg, name)
    try:
        uri, artifacts = tracking.resolve_store(
            cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err
    experiment_id = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name, artifacts)
    tags = {**choices, "run_dir": str(run_dir.resolve())}
    parent = tracking.parent_run_id()
    if parent:
        tags["mlflow.parentRunId"] = parent
    logger = MLFlowLogger(
        experiment_name=cfg.mlflow.experiment_name,
        run_name=name,
        tracking_uri=uri,
        tags=tags,
        log_model=False,
        artifact_location=artifacts,
    )
    run_id = logger.run_id
    try:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        logger.experiment.log_dict(run_id, OmegaConf.to_container(cfg, resolve=True), "config.yaml")
        checkpoints = ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="iteration_{step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=cfg.validation_interval,
            save_top_k=-1,
            save_last=True,
        )
        trainer = pl.Trainer(
            max_steps=cfg.iterations,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            precision=cfg.trainer.precision,
            gradient_clip_val=cfg.trainer.gradient_clip_val,
            logger=logger,
            callbacks=[checkpoints],
            val_check_interval=cfg.validation_interval,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            log_every_n_steps=max(1, min(10, cfg.iterations // 10)),
            default_root_dir=str(run_dir),
            enable_model_summary=False,
        )
        trainer.fit(built.module, datamodule=built.datamodule)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        logger.experiment.log_artifacts(run_id, str(run_dir / "checkpoints"), "checkpoints")
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        logger.experiment.set_terminated(run_id, status)
        raise
    metrics = trainer.callback_metrics
    final_loss = float(metrics.get("train/loss", math.nan))
    val_loss = float(metrics["val/loss"]) if "val/loss" in metrics else None
    result = TrainResult(
        run_id=run_id,
        run_name=name,
        experiment_id=experiment_id,
        tracking_uri=uri,
        iterations=trainer.global_step,
        final_loss=final_loss,
        val_loss=val_loss,
        checkpoint=str(Path(checkpoints.last_model_path).resolve()),
        run_dir=str(run_dir.resolve()),
        seconds=time.time() - started,
    )
    print(
        f"dacapo: run {name} ({run_id}) finished {result.iterations} iterations in "
        f"{result.seconds:.0f}s: train/loss {final_loss:.4g}"
        + (f", val/loss {val_loss:.4g}" if val_loss is not None else "")
        + f"; checkpoint {result.checkpoint}; view with: mlflow ui --backend-store-uri {uri}"
    )
    return result
