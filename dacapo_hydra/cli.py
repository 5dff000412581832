"""Command-line entry points (`dacapo-train`, `python train.py`)."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from dacapo_hydra.api import config_dir
from dacapo_hydra.config import register_configs
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.run import train

log = logging.getLogger("dacapo_hydra")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _train(cfg: DictConfig) -> float:
    try:
        result = train(cfg)
    except ConfigError as err:
        print(f"dacapo: error: {err}", file=sys.stderr)
        sys.exit(2)
    return result.val_loss if result.val_loss is not None else result.final_loss


def train_main() -> None:
    """Train the composed run; Hydra parses the command line (`-m` sweeps)."""
    register_configs()
    _train()
