"""Schema of `conf/config.yaml`: the run fields and one option of each group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from dacapo_hydra.config.datasplit import DataSplitConfig
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
class Config:
    """A run: one option of each group, a start point and a stopping criterion."""

    datasplit: DataSplitConfig = MISSING
    architecture: Any = MISSING
    task: Any = MISSING
    trainer: TrainerConfig = MISSING
    iterations: int = 300
    validation_interval: int = 100
    validation_samples: int = 4
    validation_criteria: list[str] | None = None
    write_validation: bool = True
    snapshot_interval: int = 0
    seed: int = 0
    start: str | None = None
    resume: Any = None
    accelerator: str = "auto"
    devices: Any = "auto"
    run_name: str | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
