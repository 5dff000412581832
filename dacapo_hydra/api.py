"""The Python API, mirroring the command line.

from dacapo_hydra import compose, train
cfg = compose(datasplit="synthetic_3d", task="affinities", overrides=["iterations=100"])
result = train(cfg)
print(result.run_id, result.final_loss)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, open_dict

from dacapo_hydra.config import register_configs
from dacapo_hydra.run import TrainResult
from dacapo_hydra.run import train as _train


def config_dir() -> Path:
    """The `conf/` folder: the checkout's, or the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {here} or inside it")


def compose(
    datasplit: str | None = None,
    architecture: str | None = None,
    task: str | None = None,
    trainer: str | None = None,
    overrides: Sequence[str] = (),
    config_name: str = "config",
    return_hydra: bool = False,
) -> DictConfig:
    """Compose a run config from group options and Hydra overrides.

    Args:
        datasplit: option of the `datasplit` group (default: the config's).
        architecture: option of the `architecture` group.
        task: option of the `task` group.
        trainer: option of the `trainer` group.
        overrides: further overrides, as on the command line (`iterations=100`).
        config_name: the primary config.
        return_hydra: keep Hydra's own node (`hydra.*`: sweeper, launcher, ...).

    Returns:
        The composed config, with the chosen options under `choices`.

    """
    register_configs()
    groups = {
        "datasplit": datasplit,
        "architecture": architecture,
        "task": task,
        "trainer": trainer,
    }
    args = [f"{g}={v}" for g, v in groups.items() if v is not None] + list(overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=args, return_hydra_config=True)
    choices = {g: cfg.hydra.runtime.choices.get(g) for g in groups}
    with open_dict(cfg):
        if not return_hydra:
            del cfg["hydra"]
        cfg.choices = choices
    return cfg


def train(cfg: DictConfig) -> TrainResult:
    """Train a composed config; returns the MLflow run id, final losses and checkpoint."""
    return _train(cfg)
