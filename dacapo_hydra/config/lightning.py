"""The `lightning` group: Lightning's `pl.Trainer` arguments, passed whole.

Not DaCapo's `trainer` group (batch, optimiser, augmentations): this node is the
training loop's, given to `pl.Trainer(**lightning)`. Any `pl.Trainer` argument may
be set; a value may be a `_target_` node (a Profiler, a Strategy, plugins), which
is instantiated. How the run's fields map onto `pl.Trainer`:

=========================  ===========================================
`pl.Trainer` argument      set from
=========================  ===========================================
max_steps                  `iterations`
val_check_interval         `validation_interval`
check_val_every_n_epoch    None: validation counts iterations, not epochs
logger                     the `logger` group (the MLflow store, `mlflow.*`)
callbacks                  the `callbacks` group, plus the run's own
default_root_dir           the run folder
enable_checkpointing       always on: the run keeps `checkpoints/last.ckpt`
log_every_n_steps          `lightning.log_every_n_steps`, or if null every
                           `iterations / 10` steps, at most 50
precision                  `lightning.precision`; `auto` is bf16-mixed on CUDA
                           GPUs with bfloat16, else 32-true
everything else            `lightning.<argument>`
=========================  ===========================================

The run-owned arguments (:data:`RUN_OWNED`) are refused in the node.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.devices import resolve_precision
from dacapo_hydra.errors import ConfigError

# pl.Trainer arguments the run sets itself, and where they come from.
RUN_OWNED: dict[str, str] = {
    "max_steps": "iterations",
    "val_check_interval": "validation_interval",
    "check_val_every_n_epoch": "validation_interval (validation counts iterations)",
    "logger": "the logger group (mlflow.*)",
    "callbacks": "the callbacks group (callbacks.<name>)",
    "default_root_dir": "the run folder",
    "enable_checkpointing": "the run itself, which keeps checkpoints/last.ckpt "
    "(callbacks.model_checkpoint=null drops the periodic checkpoints)",
}


def _instantiate(value: Any, key: str) -> Any:
    """A `_target_` node (or a list of them) instantiated; other values as they are."""
    import hydra
    from hydra.errors import InstantiationException

    if isinstance(value, list):
        return [_instantiate(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if not (isinstance(value, dict) and "_target_" in value):
        return value
    try:
        return hydra.utils.instantiate(value, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{key}: {cause}") from err


def trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments of `pl.Trainer` from `cfg.lightning`, checked.

    Every key is checked against `inspect.signature(pl.Trainer)` and the run-owned ones
    are refused; `_target_` values are instantiated and a null `log_every_n_steps` gets
    the run's default.
    The run adds the arguments it owns.

    Args:
        cfg: the composed run config.

    Returns:
        Plain keyword arguments for `pl.Trainer`.

    Raises:
        ConfigError: naming `lightning.<key>`.

    """
    import pytorch_lightning as pl

    node: dict[str, Any] = OmegaConf.to_container(cfg.get("lightning") or {}, resolve=True)
    parameters = inspect.signature(pl.Trainer).parameters
    for key in node:
        if key in RUN_OWNED:
            raise ConfigError(f"lightning.{key}: set by the run from {RUN_OWNED[key]}; remove it")
        if key not in parameters:
            close = difflib.get_close_matches(key, [p for p in parameters if p not in RUN_OWNED])
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"lightning.{key}: not an argument of pl.Trainer{hint}")
    arguments = {key: _instantiate(value, f"lightning.{key}") for key, value in node.items()}
    if "precision" in arguments:
        arguments["precision"] = resolve_precision(
            arguments["precision"], arguments.get("accelerator", "auto")
        )
    if arguments.get("log_every_n_steps") is None:
        arguments["log_every_n_steps"] = max(1, min(50, int(cfg.iterations) // 10))
    return arguments
