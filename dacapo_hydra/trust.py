"""Which `_target_`s a checkpoint's stored config may build: the allow-list.

A checkpoint holds the config its run was composed from, and rebuilding the model
(`dacapo-predict`, `-apply`, `-validate`, `-export`,
:meth:`~dacapo_hydra.training.module.RunModule.from_checkpoint`) hands that config
to `hydra.utils.instantiate`, which calls whatever its `_target_`s name. A
checkpoint from elsewhere is data, so before anything is imported or built,
:func:`check_stored_config` walks the whole stored config (nested nodes, lists,
`_partial_` nodes, the `meta` facts too, which are passed to the constructors)
and refuses every `_target_` that is not:

- a dacapo-hydra architecture (`dacapo_hydra.architectures.*`, an `Architecture`),
  task (`dacapo_hydra.tasks.*`, a `Task`) or post-processing route (a `Route`);
- a torch optimiser (`torch.optim.*`) or learning-rate schedule
  (`torch.optim.lr_scheduler.*`);
- a MONAI network (`monai.networks.nets.*`, an `nn.Module`);
- a Lightning callback, profiler or strategy (`pytorch_lightning.callbacks.*`,
  `.profilers.*`, `.strategies.*`; stored with the run, never built by a load),
  or the progress bars of `dacapo_hydra.training.progress` (Lightning's, counting
  iterations).

A target passes only if its dotted name starts with one of those packages (nothing
else is imported), it names a class defined in that package, and the class derives
from the base named. Interpolations (`${...}`) are refused too: a stored config is
saved resolved, and resolving would run resolvers and could splice in other nodes.
The user's own composed config (`train.py architecture=module ...`) is the user's
code and is not checked; a checkpoint made with their own classes loads with
`trust_checkpoint=True` (`--trust-checkpoint`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dacapo_hydra.errors import ConfigError

TRUST_FLAG = "--trust-checkpoint"


@dataclass(frozen=True)
class Rule:
    """Targets a stored config may name: classes of `package` deriving from `base`.

    Attributes:
        package: dotted package; the target's name and its class's module lie inside it.
        base: dotted name of the class every target must derive from.

    """

    package: str
    base: str

    def covers(self, target: str) -> bool:
        """Whether `target`'s dotted name lies inside the package (checked without imports)."""
        return target.startswith(self.package + ".")


RULES: tuple[Rule, ...] = (
    Rule("dacapo_hydra.architectures", "dacapo_hydra.architectures.base.Architecture"),
    Rule("dacapo_hydra.tasks", "dacapo_hydra.tasks.base.Task"),
    Rule("dacapo_hydra.tasks", "dacapo_hydra.tasks.instances.route.Route"),
    Rule("torch.optim", "torch.optim.optimizer.Optimizer"),
    Rule("torch.optim.lr_scheduler", "torch.optim.lr_scheduler.LRScheduler"),
    Rule("monai.networks.nets", "torch.nn.Module"),
    Rule("pytorch_lightning.callbacks", "pytorch_lightning.callbacks.callback.Callback"),
    Rule(
        "dacapo_hydra.training.progress",
        "pytorch_lightning.callbacks.progress.progress_bar.ProgressBar",
    ),
    Rule("pytorch_lightning.profilers", "pytorch_lightning.profilers.profiler.Profiler"),
    Rule("pytorch_lightning.strategies", "pytorch_lightning.strategies.strategy.Strategy"),
)

ALLOWED = (
    "dacapo_hydra architectures, tasks and routes, torch.optim (and lr_scheduler), "
    "monai.networks.nets, Lightning callbacks/profilers/strategies and progress bars"
)


class UntrustedCheckpoint(ConfigError):
    """A stored config names something a checkpoint may not build without trust."""


def _import(dotted: str) -> Any:
    """The object a dotted name names, as Hydra finds it: attributes, else submodules.

    Raises:
        ImportError: naming the part that is not there.

    """
    parts = dotted.split(".")
    if not all(parts):
        raise ImportError(f"{dotted!r} has an empty part")
    found = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            found = getattr(found, part)
        except AttributeError:
            try:
                found = importlib.import_module(".".join(parts[: i + 1]))
            except ImportError:
                raise ImportError(f"no {part!r} in {'.'.join(parts[:i])}") from None
    return found


def refusal(target: Any) -> str | None:
    """Why a `_target_` value may not be built from a stored config, or None if it may.

    Only names inside an allowed package are imported (as Hydra would); the
    object must be a class defined in that package deriving from the rule's base.
    """
    if not isinstance(target, str):
        return f"a {type(target).__name__} value, not a dotted name"
    rules = [rule for rule in RULES if rule.covers(target)]
    if not rules:
        return "not on the allow-list"
    try:
        obj = _import(target)
    except ImportError as err:
        return f"it does not import ({err})"
    if not isinstance(obj, type):
        return f"a {type(obj).__name__} value, not a class"
    for rule in rules:
        module = getattr(obj, "__module__", "") or ""
        inside = module == rule.package or module.startswith(rule.package + ".")
        if inside and issubclass(obj, _import(rule.base)):
            return None
    bases = " or ".join(rule.base for rule in rules)
    return f"not a class of {rules[0].package} deriving from {bases}"


def is_allowed(target: str) -> bool:
    """Whether a stored config may name `target` as a `_target_`."""
    return refusal(target) is None


def targets(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every `_target_` in a config tree, as (full key, value), outermost first.

    Args:
        node: a plain or OmegaConf tree (mappings, lists, values).
        key: the node's own key, prefixed to the keys yielded.

    """
    if isinstance(node, Mapping):
        for name, value in node.items():
            sub = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                yield sub, value
            else:
                yield from targets(value, sub)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from targets(value, f"{key}[{i}]")


def interpolations(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every string (value or key) holding `${`, as (full key, string)."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            sub = f"{key}.{name}" if key else str(name)
            if "${" in str(name):
                yield sub, str(name)
            yield from interpolations(value, sub)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from interpolations(value, f"{key}[{i}]")
    elif isinstance(node, str) and "${" in node:
        yield key, node


def check_stored_config(hparams: Mapping[str, Any], source: str | Path) -> None:
    """Refuse a checkpoint whose stored config names anything off the allow-list.

    Args:
        hparams: the checkpoint's `hyper_parameters` (`config`, the composed run
            config, and `meta`, the data facts passed to the constructors).
        source: the checkpoint file, for the message.

    Raises:
        UntrustedCheckpoint: one line naming the file, the config key, the target
            and the flag that allows it; nothing has been imported or built.

    """
    trees = [(hparams.get("config"), ""), (hparams.get("meta"), "meta")]
    hint = f"if you trust this file, pass {TRUST_FLAG} (trust_checkpoint=True in Python)"
    for tree, prefix in trees:
        for key, text in interpolations(tree, prefix):
            raise UntrustedCheckpoint(
                f"checkpoint {source}: config key {key} holds an interpolation {text[:80]!r}; "
                f"a stored config is saved resolved, so it is not built; {hint}"
            )
        for key, target in targets(tree, prefix):
            why = refusal(target)
            if why is not None:
                raise UntrustedCheckpoint(
                    f"checkpoint {source}: config key {key} names {str(target)[:120]!r}: {why}; "
                    f"a checkpoint's config may build only {ALLOWED}; {hint}"
                )
