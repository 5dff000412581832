"""Run names and the option chosen in each config group, as MLflow shows them.

A run is named by its config's `run_name`; in a `-m` sweep, by what differs
between the sweep's jobs (`affinities unet_small`); else by the four groups'
options joined (`synthetic_3d-unet_small-distance-default`). The options are
also the run's tags (:func:`group_choices`).
"""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dacapo_hydra.tracking.parent import parent_run_id, sweep_axes
from dacapo_hydra.tracking.tags import job_overrides, split_override

GROUPS = ("datasplit", "architecture", "task", "trainer")
# Every config group a sweep may vary (conf/): its options name themselves in run names.
CONFIG_GROUPS = (
    *GROUPS,
    "lightning",
    "callbacks",
    "callbacks/progress_bar",
    "debug",
    "logger",
    "experiment",
    "hparams_search",
)


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The option chosen in each group (from Hydra, or `cfg.choices` for the Python API).

    An option whose keys the command line changed is marked (:func:`mark_modified`).
    """
    if HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
        return mark_modified({g: choices.get(g) for g in GROUPS}, job_overrides())
    choices = dict(cfg.choices) if cfg.get("choices") else {}
    return {g: str(choices.get(g) or "custom") for g in GROUPS}


def mark_modified(choices: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    """Each group's option; `<option>*` where an override changed a key inside the group.

    A datasplit given by overrides (`datasplit.train=[...]`) is then not named and
    tagged as the option it started from; the `override.<key>` tags say what changed.

    Example:
        >>> mark_modified({"datasplit": "synthetic_2d", "task": "distance"},
        ...               ["datasplit.train.0.raw.dataset=raw2", "task=distance"])
        {'datasplit': 'synthetic_2d*', 'task': 'distance'}

    """
    keys = [split_override(line)[0] for line in overrides]
    changed = {key.split(".")[0] for key in keys if "." in key}
    return {
        group: f"{option or 'custom'}{'*' if group in changed and option else ''}"
        for group, option in choices.items()
    }


def child_name(axes: list[str], overrides: list[str]) -> str | None:
    """A sweep job's name: what differs, short enough for MLflow's run-name column.

    A config group's option stands alone (`affinities`); any other key is written
    `name=value` with the key's last part (`lr=0.001` for `trainer.optimizer.lr`);
    the parts are joined by spaces. The full overrides are the run's `override.*` tags.

    Example:
        >>> child_name(["task", "architecture"], ["architecture=unet_small", "task=affinities"])
        'affinities unet_small'
        >>> child_name(["trainer.optimizer.lr", "seed"], ["seed=1", "trainer.optimizer.lr=1e-3"])
        'lr=1e-3 seed=1'

    """
    values = dict(split_override(line) for line in overrides)
    parts = [
        values[key] if key in CONFIG_GROUPS else f"{key.rsplit('.', 1)[-1]}={values[key]}"
        for key in axes
        if key in values
    ]
    return " ".join(parts) or None


def run_name(cfg: DictConfig, choices: dict[str, str]) -> str:
    """A readable run name.

    The config's `run_name`; in a `-m` sweep, what differs between its jobs
    (`affinities unet_small`); else the four choices joined.
    """
    if cfg.get("run_name"):
        return str(cfg.run_name)
    in_sweep = child_name(sweep_axes(), job_overrides()) if parent_run_id() else None
    return in_sweep or "-".join(choices[g] for g in GROUPS)
