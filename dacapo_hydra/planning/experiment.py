"""The plan as Hydra sees it: overrides under the command line's, and an experiment YAML.

A run with `plan=auto` and a datasplit that is not a demo (`datasplit.auto_plan`)
is composed twice: once as given, to open the data and measure its fingerprint,
then with the plan's values as overrides followed by the command line's own, so
any key the user set wins (a key the command line names, or any key inside a
group it chose, is left out of the plan). `dacapo-plan` writes the same values
as `conf/experiment/<name>.yaml` for the user to read, edit and commit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from dacapo_hydra.planning.plan import GROUPS, Plan, make_plan

PLAN_MODES = ("auto", "none")
# The config groups of conf/config.yaml's defaults: an override of one picks an option.
CONFIG_GROUPS = (
    "datasplit",
    "architecture",
    "task",
    "trainer",
    "lightning",
    "callbacks",
    "logger",
    "plan",
    "experiment",
    "hparams_search",
    "debug",
)


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The keys (or groups) a list of Hydra overrides sets, as Hydra's own parser reads them.

    Example:
        >>> override_keys(["task=affinities", "+trainer.batch_size=4", "~callbacks.x"])
        ['task', 'trainer.batch_size', 'callbacks.x']

    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))]


def _taken(key: str, given: Sequence[str]) -> bool:
    """Whether a user key sets `key`: the same key, a node above it, or a key inside it.

    A group choice above a plan's key takes it (`architecture=unet_small` takes
    `architecture.input_shape`); a user's key inside a group the plan chooses
    leaves the choice to the plan (`architecture.input_shape=100` keeps
    `architecture=cnnectome_unet`, with the user's input shape).
    """
    for user in given:
        if key == user or key.startswith(user + "."):
            return True
        if user.startswith(key + ".") and key not in GROUPS:
            return True
    return False


def format_value(value: Any) -> str:
    """A value as a Hydra override writes it (`[[1,2,2],[1,2,2]]`, `yx`, `0.5`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def split_overrides(plan: Plan, given: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the plan's overrides the command line leaves, the plan's keys it overrides)."""
    keys = override_keys(given)
    applied, overridden = [], []
    for value in plan.values:
        if _taken(value.key, keys):
            overridden.append(value.key)
        else:
            # `++`: a key the chosen option lacks (MONAI's kernel_size) is added.
            force = "" if value.key in GROUPS else "++"
            applied.append(f"{force}{value.key}={format_value(value.value)}")
    return applied, overridden


def wants_plan(cfg: DictConfig, given: Sequence[str]) -> str | None:
    """Why the run is not planned (a line), or None when it is."""
    mode = cfg.plan.mode if "plan" in cfg and cfg.plan else "none"
    if mode not in PLAN_MODES:
        raise ValueError(f"plan.mode: expected one of {PLAN_MODES}, got {mode!r}")
    if mode == "none":
        return "plan=none"
    if not cfg.datasplit.get("auto_plan", True):
        return "a demo datasplit (auto_plan: false): its own short settings"
    if "experiment" in override_keys(given):
        return "an experiment: its own settings"
    return None


def plan_for(cfg: DictConfig, gpu_bytes: int | None = None) -> Plan:
    """Open the datasplit `cfg` names, measure its fingerprint and plan for this device.

    Args:
        cfg: a composed run config.
        gpu_bytes: plan for a GPU of this memory (None: `plan.gpu_memory_gib`, else
            this machine's; 0: a CPU).

    """
    from dacapo_hydra.data.datasplit import DataSplit
    from dacapo_hydra.data.fingerprint import measure
    from dacapo_hydra.planning.budget import device_budget

    if gpu_bytes is None and cfg.plan.get("gpu_memory_gib") is not None:
        gpu_bytes = int(float(cfg.plan.gpu_memory_gib) * 2**30)
    split = DataSplit.from_config(cfg.datasplit)
    return make_plan(measure(split), device_budget(gpu_bytes), str(cfg.plan.architecture))


def apply_plan(
    cfg: DictConfig, given: Sequence[str], config_name: str = "config"
) -> tuple[DictConfig, Plan | None]:
    """The run config with the plan's values under the command line's (`given`), and the plan.

    Composes again with Hydra (initialised: inside `hydra.main` or `initialize_*`),
    so every planned value passes the group schemas. Returns `cfg` unchanged and
    None when the run is not planned (:func:`wants_plan`).
    """
    if wants_plan(cfg, given) is not None:
        return cfg, None
    from hydra import compose

    plan = plan_for(cfg)
    applied, overridden = split_overrides(plan, given)
    planned = compose(config_name, overrides=[*applied, *given])
    with open_dict(planned):
        planned.plan.record = plan_artifact(plan, overridden)
        if "choices" in cfg:
            planned.choices = cfg.choices
    return planned, plan


def plan_artifact(plan: Plan, overridden: Sequence[str]) -> dict[str, Any]:
    """The `plan.yaml` a run logs: fingerprint, every value with its reason, what was overridden."""
    return {**plan.to_dict(), "overridden": list(overridden)}


def experiment_text(
    plan: Plan, choices: dict[str, str], name: str, given: dict[str, Any] | None = None
) -> str:
    """`conf/experiment/<name>.yaml`: the plan as a Hydra experiment, reasons as comments.

    Args:
        plan: the plan.
        choices: the group options it was planned for (`datasplit`, `task`, ...).
        name: the experiment's name.
        given: the command line's own values (dotted key -> value), which win.

    """
    from dacapo_hydra.planning.table import plan_table

    values = OmegaConf.create()
    groups = dict(choices)
    for value in plan.values:
        if value.key in GROUPS:
            groups[value.key] = value.value
        else:
            OmegaConf.update(values, value.key, value.value, force_add=True)
    for key, value in (given or {}).items():
        OmegaConf.update(values, key, value, force_add=True)
    groups["plan"] = "none"  # the values are here: the run does not plan again
    header = [
        "# @package _global_",
        f"# Planned by dacapo-plan: python train.py experiment={name}",
        "# Edit any value; a command-line override still wins. Why each value:",
        *(f"#   {line}".rstrip() for line in plan_table(plan).splitlines()),
        "defaults:",
        *(f"  - override /{group}: {option}" for group, option in groups.items()),
    ]
    return "\n".join(header) + "\n" + OmegaConf.to_yaml(values)


def write_experiment(text: str, folder: Path, name: str) -> Path:
    """Write `<folder>/experiment/<name>.yaml` atomically (a temporary file, renamed)."""
    target = folder / "experiment" / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".yaml", dir=target.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
