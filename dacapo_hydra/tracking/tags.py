"""What a run's MLflow tags and params say: overrides, the config, the criterion's direction.

A run records each command-line override as a tag `override.<key>` (its value the
override's), so the MLflow UI can filter and compare runs by what was changed;
`criterion.higher_is_better` says which way the run's criterion improves (a sweep
compares its children with it). Params and tags share one separator, Hydra's `.`:
the config's params are :func:`flatten`ed to `trainer.optimizer.lr`, as the
override that changes it (`trainer.optimizer.lr=1e-4`) and its tag
(`override.trainer.optimizer.lr`) are written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hydra.core.hydra_config import HydraConfig

OVERRIDE_TAG_PREFIX = "override."
DIRECTION_TAG = "criterion.higher_is_better"
# MLflow's limit on a tag's value (characters).
TAG_VALUE_LIMIT = 5000


def split_override(line: str) -> tuple[str, str]:
    """`(key, value)` of a command-line override; `+`, `++` and `~` prefixes dropped.

    Example:
        >>> split_override("+trainer.accumulate_grad_batches=4")
        ('trainer.accumulate_grad_batches', '4')
        >>> split_override("start=run:0a1b/best_dice")
        ('start', 'run:0a1b/best_dice')

    """
    key, _, value = line.partition("=")
    return key.lstrip("+~").strip(), value.strip()


def job_overrides() -> list[str]:
    """The running job's command-line overrides (`task=affinities`, ...); none outside Hydra."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def override_tags(overrides: list[str]) -> dict[str, str]:
    """One tag `override.<key>` per command-line override, its value the override's.

    Example:
        >>> override_tags(["task=affinities", "+trainer.profiler=simple"])
        {'override.task': 'affinities', 'override.trainer.profiler': 'simple'}

    """
    tags = {}
    for line in overrides:
        key, value = split_override(line)
        if key:
            safe = re.sub(r"[^\w./ -]", "_", key)
            tags[f"{OVERRIDE_TAG_PREFIX}{safe}"] = value[:TAG_VALUE_LIMIT]
    return tags


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as `{dotted key: leaf}` (lists are leaves): the run's params.

    Example:
        >>> flatten({"trainer": {"optimizer": {"lr": 0.001}}, "tags": [1, 2]})
        {'trainer.optimizer.lr': 0.001, 'tags': [1, 2]}

    """
    if not isinstance(node, Mapping) or not node:
        return {prefix: node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
