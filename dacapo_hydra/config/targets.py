"""Free `_target_` nodes checked against their targets before a run exists.

The optimiser and the learning-rate schedule (`trainer.optimizer`,
`trainer.scheduler`) and the Lightning callbacks (`callbacks.<name>`) are Hydra
`_target_` nodes with the target's own arguments and nothing merged in from a
schema. Each is checked here: the target imports and is the right kind of class,
every given argument is one its signature accepts, every required one is given.
The optimiser and schedule are also built once on a stand-in parameter, so a bad
value (a negative learning rate) is refused as well. Every error is one line
naming the key at fault (`trainer.optimizer.momentum: ...`).

Heavy modules (torch) are imported inside the functions: composing a config
imports this package.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dacapo_hydra.errors import ConfigError

# Keys of a `_target_` node that Hydra reads, not the target.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


def target_class(node: Mapping[str, Any], key: str, base: type | tuple[type, ...]) -> type:
    """The class a `_target_` node names, checked to be a subclass of `base`.

    Args:
        node: the config node (plain or OmegaConf mapping).
        key: its full config key, for messages (`trainer.optimizer`).
        base: the class (or classes) the target must derive from.

    Raises:
        ConfigError: no `_target_`, a target that does not import, or not a `base`.

    """
    from hydra.utils import get_class

    bases = base if isinstance(base, tuple) else (base,)
    expected = " or ".join(f"{b.__module__}.{b.__qualname__}" for b in bases)
    if not isinstance(node, Mapping) or not node.get("_target_"):
        raise ConfigError(f"{key}: expected a node with a _target_ (a {expected}), got {node!r}")
    target = str(node["_target_"])
    try:
        cls = get_class(target)
    except (ImportError, ValueError) as err:
        raise ConfigError(f"{key}._target_: {target!r} does not import ({err})") from None
    if not issubclass(cls, bases):
        raise ConfigError(f"{key}._target_: {target} is not a {expected}")
    return cls


def check_arguments(
    cls: type, given: Iterable[str], key: str, supplied: Iterable[str] = (), name: str = ""
) -> None:
    """Every given argument is accepted by `cls(...)`, every required one is given.

    Args:
        cls: the class to be constructed.
        given: the argument names the config gives (Hydra's own keys are ignored).
        key: the node's full config key, for messages.
        supplied: arguments the run passes itself (the parameters, the optimiser);
            the config may not give them.
        name: the class as the config names it (default: its full name).

    Raises:
        ConfigError: naming `<key>.<argument>`.

    """
    parameters = inspect.signature(cls).parameters
    supplied = set(supplied)
    names = [
        n
        for n, p in parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in supplied
    ]
    open_ended = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    given = [g for g in given if g not in HYDRA_KEYS]
    name = name or f"{cls.__module__}.{cls.__qualname__}"
    for argument in given:
        if argument in supplied:
            raise ConfigError(f"{key}.{argument}: the run passes {argument} to {name} itself")
        if argument not in parameters and not open_ended:
            raise ConfigError(
                f"{key}.{argument}: {name} takes no argument {argument!r}; "
                f"it takes {', '.join(names) or 'none'}"
            )
    for argument in names:
        parameter = parameters[argument]
        if parameter.default is parameter.empty and argument not in given:
            raise ConfigError(f"{key}.{argument}: {name} needs it; add +{key}.{argument}=...")


def _partial(node: Any, key: str) -> Callable[..., Any]:
    """Instantiate a checked node as a partial, naming `key` on failure."""
    import hydra
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(node, _partial_=True)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{key}: {cause}") from err


def _build(factory: Callable[..., Any], argument: Any, key: str, name: str) -> Any:
    """Call `factory(argument)` once, naming `key` and the target `name` when it fails."""
    try:
        return factory(argument)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{key}: {name} refuses it: {err}") from err


def optimizer_factories(
    trainer: Mapping[str, Any],
) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """The optimiser and learning-rate schedule of DaCapo's trainer, checked.

    `trainer.optimizer` must name a `torch.optim.Optimizer` subclass and
    `trainer.scheduler` (or null) a `torch.optim.lr_scheduler.LRScheduler`
    subclass stepped every iteration (not `ReduceLROnPlateau`, which needs a
    monitored score). The run passes the parameters (and the optimiser) itself;
    `_partial_` is implied.

    Args:
        trainer: the `trainer` config node.

    Returns:
        (optimizer factory taking the parameters, scheduler factory taking the
        optimiser or None).

    Raises:
        ConfigError: naming `trainer.optimizer.<key>` or `trainer.scheduler.<key>`.

    """
    import torch
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

    key = "trainer.optimizer"
    node = trainer.get("optimizer")
    cls = target_class(node, key, torch.optim.Optimizer)
    name = str(node["_target_"])
    check_arguments(cls, node.keys(), key, supplied=["params"], name=name)
    optimizer = _partial(node, key)
    probe = _build(optimizer, [torch.nn.Parameter(torch.zeros(1))], key, name)
    key = "trainer.scheduler"
    node = trainer.get("scheduler")
    if not node:
        return optimizer, None
    cls = target_class(node, key, LRScheduler)
    name = str(node["_target_"])
    if issubclass(cls, ReduceLROnPlateau):
        raise ConfigError(
            f"{key}._target_: {name} needs a monitored score; use a schedule stepped every "
            "iteration (LinearLR, CosineAnnealingLR, OneCycleLR, ...)"
        )
    check_arguments(cls, node.keys(), key, supplied=["optimizer"], name=name)
    scheduler = _partial(node, key)
    _build(scheduler, probe, key, name)
    return optimizer, scheduler
