"""Resuming a run: where it continues from, what changed, and which changes are refused.

`resume=true` (or `resume=<run id>`) continues an unfinished MLflow run from the
newest intact checkpoint in its folder (:func:`dacapo_hydra.training.checkpoints.newest_intact`).
The settings given now are compared with those the checkpoint was trained with
(the config it holds):

- a change that makes the checkpoint meaningless is refused before anything
  runs, in one line naming the key: anything under `architecture` or `task`, or
  `datasplit.dims`; so is another optimiser class (`trainer.optimizer._target_`)
  or any change to `trainer.scheduler`, whose state the checkpoint holds and
  would restore over the new settings (:data:`REFUSED`). Start a new run from the
  checkpoint's weights instead (`start=<checkpoint>`);
- any other change (more `iterations`, another batch size, other callbacks) is
  applied and recorded. Lightning restores the optimiser's settings from the
  checkpoint, so :class:`OptimizerSettings` sets the changed ones
  (`trainer.optimizer.lr`, `betas`, ...) again once it has. MLflow parameters
  cannot be overwritten, so the run's params keep
  the values it started with; the n-th resume of a run adds the tags
  `resume.<n>.<key>` = the new value (dotted keys, as on the command line),
  `resume.<n>.from` = the checkpoint and its iteration, `resumes` = n, and the
  artifact `config.resume-<n>.yaml`, the whole config it continued with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dacapo_hydra.errors import ConfigError
from dacapo_hydra.tracking.tags import flatten

# Keys (and key prefixes) whose change makes a checkpoint meaningless, or that resuming
# cannot honour (the checkpoint's optimiser and scheduler state would overrule them).
REFUSED = (
    "architecture",
    "task",
    "datasplit.dims",
    "trainer.optimizer._target_",
    "trainer.scheduler",
)
OPTIMIZER_PREFIX = "trainer.optimizer."
# Keys that say how to start, not what is trained.
IGNORED = ("resume", "start", "choices")
RESUMES_TAG = "resumes"
RESUME_TAG_PREFIX = "resume."
_TAG_VALUE_LIMIT = 5000
_ABSENT = "(absent)"


@dataclass
class ResumePoint:
    """The run a resume continues, and the checkpoint it continues from."""

    run_id: str
    checkpoint: Path
    iteration: int
    config: dict[str, Any]
    meta: dict[str, Any]

    def as_record(self) -> dict[str, Any]:
        """A JSON-able record (what rank 0 sends the other ranks)."""
        return {**vars(self), "checkpoint": str(self.checkpoint)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ResumePoint:
        """The inverse of :meth:`as_record`."""
        return cls(**{**record, "checkpoint": Path(record["checkpoint"])})


def start_record(start: tuple[ResumePoint | None, Path]) -> list[Any]:
    """Where a run starts (the resume point or None, the run folder) as JSON-able data.

    What rank 0 sends the other ranks of a DDP run.
    """
    resume, run_dir = start
    return [resume.as_record() if resume is not None else None, str(run_dir)]


def from_start_record(record: list[Any]) -> tuple[ResumePoint | None, Path]:
    """The inverse of :func:`start_record`."""
    resume = ResumePoint.from_record(record[0]) if record[0] is not None else None
    return resume, Path(record[1])


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{key: (old value, new value)}` for every leaf that differs, in key order.

    A key only one side has is paired with `"(absent)"`; the keys in
    :data:`IGNORED` (`resume`, `start`) are left out.

    Example:
        >>> changed_settings({"iterations": 300, "resume": None},
        ...                  {"iterations": 600, "resume": True})
        {'iterations': (300, 600)}

    """
    before, after = flatten(old), flatten(new)
    changes = {}
    for key in sorted(before.keys() | after.keys()):
        if key.split(".")[0] in IGNORED:
            continue
        was, now = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if was != now:
            changes[key] = (was, now)
    return changes


def _shown(value: Any) -> str:
    """A value as a tag shows it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def refuse_meaningless(changes: Mapping[str, tuple[Any, Any]], checkpoint: Path) -> None:
    """Raise for the first change under :data:`REFUSED`.

    Raises:
        ConfigError: one line naming the key, both values and the checkpoint.

    """
    for key, (was, now) in changes.items():
        if any(key == r or key.startswith(f"{r}.") for r in REFUSED):
            raise ConfigError(
                f"resume: {key} is {_shown(now)} but {checkpoint} was trained with {_shown(was)}; "
                f"resume with {key}={_shown(was)}, or start a new run from its weights "
                f"with start={checkpoint}"
            )


def check_data(point: ResumePoint, dims: int, in_channels: int) -> None:
    """Refuse data of other dimensions or channels than the checkpoint's.

    Raises:
        ConfigError: one line naming the datasplit and the checkpoint.

    """
    was = (point.meta.get("dims"), point.meta.get("in_channels"))
    if was != (dims, in_channels):
        raise ConfigError(
            f"resume: datasplit gives {dims}D data with {in_channels} channel(s) but "
            f"{point.checkpoint} was trained on {was[0]}D data with {was[1]} channel(s)"
        )


def record_resume(
    client: Any, point: ResumePoint, config: Mapping[str, Any], changes: Mapping[str, Any]
) -> int:
    """Record a resume on its MLflow run: tags `resume.<n>.*`, `resumes`, `config.resume-<n>.yaml`.

    Args:
        client: an `MlflowClient`.
        point: what is resumed.
        config: the config the run continues with (resolved).
        changes: :func:`changed_settings` between the checkpoint's config and `config`.

    Returns:
        n, the resume's number (1 for a run's first).

    """
    tags = client.get_run(point.run_id).data.tags
    number = int(tags.get(RESUMES_TAG, "0")) + 1
    prefix = f"{RESUME_TAG_PREFIX}{number}."
    client.set_tag(point.run_id, RESUMES_TAG, str(number))
    client.set_tag(
        point.run_id, f"{prefix}from", f"{point.checkpoint} (iteration {point.iteration})"
    )
    for key, (_, now) in changes.items():
        safe = re.sub(r"[^\w./ -]", "_", key)
        client.set_tag(point.run_id, f"{prefix}{safe}", _shown(now)[:_TAG_VALUE_LIMIT])
    client.log_dict(point.run_id, dict(config), f"config.resume-{number}.yaml")
    return number


class OptimizerSettings(pl.Callback):
    """Set a resumed run's changed optimiser settings once Lightning has restored its state.

    Lightning restores the optimiser from the checkpoint, its settings (`lr`,
    `betas`, `weight_decay`, ...) included, so a resume with another learning rate
    would go on at the old one. At `on_train_start`, after the restore, each
    changed `trainer.optimizer.<key>` is set on every parameter group. A new `lr`
    scales the current rate and the schedulers' base rates by new / old, so a run
    in the middle of its warm-up stays there.

    Args:
        changes: :func:`changed_settings`; only the `trainer.optimizer.*` ones are used.

    """

    def __init__(self, changes: Mapping[str, tuple[Any, Any]]) -> None:
        self.settings = {
            key.removeprefix(OPTIMIZER_PREFIX): values
            for key, values in changes.items()
            if key.startswith(OPTIMIZER_PREFIX) and "." not in key.removeprefix(OPTIMIZER_PREFIX)
        }

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set the changed settings on the restored optimisers."""
        for key, (was, now) in self.settings.items():
            if key == "lr" and isinstance(was, int | float) and was:
                self._scale_lr(trainer, float(now) / float(was))
                continue
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    if key in group:
                        group[key] = tuple(now) if isinstance(group[key], tuple) else now

    @staticmethod
    def _scale_lr(trainer: pl.Trainer, ratio: float) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= ratio
                if "initial_lr" in group:
                    group["initial_lr"] *= ratio
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
