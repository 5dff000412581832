"""`dacapo-train` (and `python train.py`): train the composed run; Hydra parses the command line.

`--help` lists the config groups quickly (without Hydra's internal `schema/*`
groups), `--version` answers without importing Hydra's app, and bad input ends the
run with one line and exit status 2 (:func:`~dacapo_hydra.cli.common.guarded`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dacapo_hydra import __version__
from dacapo_hydra.cli.common import guarded
from dacapo_hydra.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig


def _train_task(cfg: DictConfig) -> float:
    """Hydra's task: train one run; the value a sweeper optimises.

    Bad input exits with status 2; SIGINT or SIGTERM with 130 or 143 (128 + the
    signal's number), a known fault (a full disk) with 1, after one line saying how to
    continue the run.
    """
    from dacapo_hydra.training.process.stops import RunFailed, RunInterrupted
    from dacapo_hydra.training.run import train

    try:
        result = guarded("dacapo", lambda: train(_planned(cfg)), (ConfigError,))
    except (RunInterrupted, RunFailed) as stop:
        print(f"dacapo: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    if result.best_score is not None:
        return result.best_score
    return result.val_loss if result.val_loss is not None else result.final_loss


def _planned(cfg: DictConfig) -> DictConfig:
    """The run config with the plan's values under the command line's (`plan=auto`).

    The group choices Hydra reports (run name, tags) are the planned ones: the
    architecture and callbacks a plan picks replace the defaults it was composed with.
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from dacapo_hydra.planning.experiment import apply_plan
    from dacapo_hydra.planning.plan import GROUPS
    from dacapo_hydra.planning.table import plan_table

    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    try:
        planned, plan = apply_plan(cfg, given)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise ConfigError(str(err.args[0] if err.args else err)) from err
    if plan is None:
        return cfg
    print("dacapo: planned from the data (plan=none to turn off; an override wins):")
    print(plan_table(plan, list(planned.plan.record["overridden"])))
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        with read_write(choices), open_dict(choices):
            for key in GROUPS:
                if key in plan.as_dict() and key not in planned.plan.record["overridden"]:
                    choices[key] = plan.get(key)
    return planned


def _config_groups(self: Any, predicate: Callable[[str], bool], compact: bool = True) -> str:
    """Hydra's `Hydra.format_config_groups`, without the internal `schema/*` groups.

    Hydra's own copies its whole config repository (our structured schemas
    included) for every group it lists, which made `--help` take seconds; this
    lists every group from one copy.
    """
    from hydra._internal.config_repository import CachingConfigRepository, ConfigRepository
    from hydra.core.object_type import ObjectType

    from dacapo_hydra.config.user_dir import user_config_source

    # Hydra's help lists the search path without `hydra.searchpath`: add the user folder.
    search_path = copy.deepcopy(self.config_loader.config_search_path)
    schema = search_path.get_path().pop(-1)
    search_path.append("dacapo user config", user_config_source())
    search_path.append(schema.provider, schema.path)
    repo = CachingConfigRepository(ConfigRepository(config_search_path=search_path))

    def groups(parent: str) -> list[str]:
        found = []
        for child in repo.get_group_options(parent, ObjectType.GROUP):
            name = f"{parent}/{child}" if parent else child
            if name.split("/")[0] == "schema":
                continue
            if repo.get_group_options(name, ObjectType.CONFIG):
                found.append(name)
            found += groups(name)
        return found

    lines = []
    for group in sorted(g for g in groups("") if predicate(g)):
        options = sorted(repo.get_group_options(group, ObjectType.CONFIG))
        if compact:
            lines.append(f"{group}: {', '.join(options)}")
        else:
            lines.append(f"{group}:\n" + "\n".join(f"  {o}" for o in options))
    return "".join(f"{line}\n" for line in lines)


def _fast_help_groups() -> None:
    """Make `--help` list the config groups quickly, without `schema/*` (:func:`_config_groups`)."""
    from hydra._internal.hydra import Hydra

    Hydra.format_config_groups = _config_groups  # type: ignore[method-assign]


def train_main() -> None:
    """`dacapo-train` / `python train.py`: train the composed run; Hydra parses the command line.

    Example:
        `dacapo-train datasplit=synthetic_3d task=affinities iterations=1000`, or a
        sweep, one MLflow child run per combination:
        `dacapo-train -m task=distance,affinities architecture=unet_tiny,unet_small`.

    """
    if "--version" in sys.argv[1:]:
        from hydra import __version__ as hydra_version

        print(f"dacapo-train {__version__} (dacapo-hydra; Hydra {hydra_version})")
        return
    import hydra

    from dacapo_hydra.api import config_dir
    from dacapo_hydra.config import register_configs

    guarded("dacapo-train", register_configs)
    _fast_help_groups()
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    app(_train_task)()
