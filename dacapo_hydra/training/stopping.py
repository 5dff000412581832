"""Why a finished run stopped: iterations, no improvement, the wall-clock budget.

A run stops at `iterations` (Lightning's `max_steps`), when an `EarlyStopping`
callback (`callbacks=early_stopping`, which a plan adds) has seen no improvement of
the validation criterion for `patience` validations, or when `budget` (a
wall-clock duration, Lightning's :class:`~pytorch_lightning.callbacks.Timer`) has
passed. :func:`stop_reason` names which, for the summary line and the MLflow tag
`stop_reason`; a signal is named where the run handles it
(:mod:`dacapo_hydra.training.process.stops`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, Timer

from dacapo_hydra.config.units import to_seconds
from dacapo_hydra.errors import ConfigError

TAG = "stop_reason"
HISTORY_SHOWN = 8  # the last validations the summary line quotes


class CriterionHistory(pl.Callback):
    """The monitored validation score at each validation (not the sanity check).

    Args:
        monitor: the metric, e.g. `validation/f1`.

    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.history: list[tuple[int, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keep (iteration, score) when the score was logged."""
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.history.append((trainer.global_step, float(trainer.callback_metrics[self.monitor])))


def budget_timer(budget: str | float | None) -> Timer | None:
    """Lightning's Timer for a wall-clock `budget` (`20min`, `1.5h`; a number: seconds), or None.

    Raises:
        ConfigError: naming `budget`, for text that is no duration.

    """
    if budget is None:
        return None
    try:
        seconds = to_seconds(budget, "budget")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return Timer(duration=timedelta(seconds=seconds), interval="step", verbose=False)


def stop_callbacks(
    budget: str | float | None, criterion: str, callbacks: list[pl.Callback]
) -> list[pl.Callback]:
    """The callbacks that stop a run or say why: a budget Timer, the criterion's history.

    Args:
        budget: the run's `budget`.
        criterion: the task's criterion (watched unless an EarlyStopping watches another).
        callbacks: the configured callbacks (an EarlyStopping among them names the monitor).

    """
    stoppers = [c for c in callbacks if isinstance(c, EarlyStopping)]
    monitor = stoppers[0].monitor if stoppers else f"validation/{criterion}"
    timer = budget_timer(budget)
    return [CriterionHistory(monitor), *([timer] if timer is not None else [])]


@dataclass(frozen=True)
class Stop:
    """Why a run stopped: a short tag value and a line for the summary."""

    tag: str
    line: str


def stop_reason(trainer: pl.Trainer, iterations: int, budget: str | float | None = None) -> Stop:
    """Why `trainer.fit` returned: iterations reached, no improvement, budget, or other.

    Args:
        trainer: the fitted trainer (its callbacks: EarlyStopping, Timer, CriterionHistory).
        iterations: the run's ceiling (`iterations`).
        budget: the run's `budget`, as written.

    """
    step = trainer.global_step
    if step >= iterations:
        return Stop("iterations", f"reached iterations={iterations}")
    histories = [c for c in trainer.callbacks if isinstance(c, CriterionHistory)]
    for stopper in (c for c in trainer.callbacks if isinstance(c, EarlyStopping)):
        if stopper.wait_count >= stopper.patience:
            history = histories[0].history[-HISTORY_SHOWN:] if histories else []
            shown = ", ".join(f"{score:.4g}@{it}" for it, score in history)
            best = float(stopper.best_score)
            return Stop(
                "no_improvement",
                f"no improvement of {stopper.monitor} for {stopper.patience} validations "
                f"(best {best:.4g}; history {shown or 'not recorded'})",
            )
    for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
        remaining = timer.time_remaining("train")
        if remaining is not None and remaining <= 0:
            return Stop("budget", f"budget={budget} ran out at iteration {step}")
    return Stop("stopped", f"stopped at iteration {step} (e.g. fast_dev_run, max_time)")
