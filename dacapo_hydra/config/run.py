"""Schema of `conf/config.yaml`: the run fields and one option of each group.

Two things are called a trainer here, and they are different groups:

- `trainer` is DaCapo's trainer (:class:`~dacapo_hydra.config.trainer.TrainerConfig`):
  how the network is trained, i.e. batch, loader workers, optimiser, learning-rate
  schedule and augmentations.
- `lightning` is Lightning's `pl.Trainer` (the training loop), passed whole as
  `pl.Trainer(**lightning)`: accelerator, devices, precision, gradient clipping,
  gradient accumulation, profiler, determinism, ... any `pl.Trainer` argument.
  The run sets max_steps (from `iterations`), val_check_interval (from
  `validation_interval`), the logger and the callbacks itself
  (:data:`~dacapo_hydra.config.lightning.RUN_OWNED`).

`callbacks` are Lightning callbacks, each a `_target_` node (checkpoint policy,
learning-rate monitor, progress bar, early stopping); the run adds its own
(whole-volume validation, snapshots, `checkpoints/last.ckpt`). `logger=mlflow`
holds the MLflow store (`mlflow.*`), `debug=` presets set `lightning` flags
(fast_dev_run, overfit_batches, profiler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from dacapo_hydra.config.datasplit import DataSplitConfig
from dacapo_hydra.config.plan import PlanConfig
from dacapo_hydra.config.trainer import TrainerConfig


@dataclass
class PathsConfig:
    """Where runs and cached data go."""

    output_dir: str = "outputs"
    data_dir: str = "outputs/data"


@dataclass
class MlflowConfig:
    """MLflow store: a sqlite tracking database and a local artifact folder."""

    tracking_uri: str = MISSING
    artifact_location: str = MISSING
    experiment_name: str = "dacapo"
    register_model_name: str | None = None
    log_system_metrics: bool = False


@dataclass
class DistributedConfig:
    """Several training processes (DDP): how long a collective may wait, in seconds."""

    timeout: float = 1800.0


@dataclass
class Config:
    """A run: one option of each group, a start point and a stopping criterion."""

    datasplit: DataSplitConfig = MISSING
    architecture: Any = MISSING
    task: Any = MISSING
    trainer: TrainerConfig = MISSING
    plan: PlanConfig = field(default_factory=PlanConfig)
    iterations: int = 300
    budget: str | None = None
    validation_interval: int = 100
    validation_samples: int = 4
    validation_criteria: list[str] | None = None
    write_validation: bool = True
    snapshot_interval: int = 0
    seed: int = 0
    start: str | None = None
    resume: Any = None
    run_name: str | None = None
    lightning: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
