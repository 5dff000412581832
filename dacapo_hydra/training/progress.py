"""Progress bars that count iterations: Lightning's, with the run's totals.

Lightning's bars count the batches of an epoch. A run here is `iterations`
optimiser steps (`max_steps`) over an endless stream of crops, so the epoch has
no length ("40/?"); with `accumulate_grad_batches=4` the batches run four times
ahead of the iterations; and a resumed run starts its count at 0 again. These
subclasses (the `callbacks/progress_bar` options) show `global_step` out of
`max_steps` instead: the same figure as the run's `iterations`, its summary and
its checkpoints, continuing from the resumed iteration, whatever the accumulation.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar as LightningRichProgressBar
from pytorch_lightning.callbacks import TQDMProgressBar as LightningTQDMProgressBar

DESCRIPTION = "iteration"


def iteration_total(trainer: pl.Trainer, batches: int | float) -> int | float:
    """The bar's total: the run's `max_steps` (iterations), else Lightning's batch count."""
    return trainer.max_steps if trainer.max_steps > 0 else batches


class TQDMProgressBar(LightningTQDMProgressBar):
    """Lightning's tqdm bar counting iterations (optimiser steps) out of `max_steps`.

    Arguments as Lightning's (`refresh_rate`: redraw every this many iterations).
    """

    @property
    def total_train_batches(self) -> int | float:
        """The run's iterations, not the epoch's batches."""
        return iteration_total(self.trainer, super().total_train_batches)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        """Start the count at the current iteration (a resumed run's, say)."""
        super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        # tqdm's rate counts from `initial`: only the iterations run now.
        bar.initial = bar.n = trainer.global_step
        bar.set_description(DESCRIPTION)
        if not bar.disable:
            bar.refresh()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Show the iteration reached (batches that only accumulate leave it unchanged)."""
        bar = self._train_progress_bar
        step = trainer.global_step
        if bar is None or step == bar.n or not self._should_update(step, bar.total):
            return
        bar.n = step
        if not bar.disable:
            bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))


class RichProgressBar(LightningRichProgressBar):
    """Lightning's rich bar counting iterations (optimiser steps) out of `max_steps`.

    Arguments as Lightning's (`refresh_rate`: redraw every this many iterations).
    """

    @property
    def total_train_batches(self) -> int | float:
        """The run's iterations, not the epoch's batches."""
        return iteration_total(self.trainer, super().total_train_batches)

    def _get_train_description(self, current_epoch: int) -> str:
        return DESCRIPTION

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Lightning's update, given the iteration reached instead of the batch index."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, trainer.global_step - 1)
