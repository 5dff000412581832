"""The progress bars count iterations (optimiser steps) out of `max_steps`.

With gradient accumulation and after a resume, as the run counts them: the
total is `iterations`, not the endless epoch's "?", and a resumed run's bar
starts at the iteration it resumed from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from dacapo_hydra.training.progress import RichProgressBar, TQDMProgressBar


class Endless(IterableDataset):
    """An endless stream of samples, as the crop sampler is."""

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield torch.ones(2)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Endless(), batch_size=1)


class Seen(pl.Callback):
    """What the bar shows at each batch and at the end."""

    def __init__(self, bar: TQDMProgressBar) -> None:
        self.bar = bar
        self.shown: list[tuple[int, int | float | None]] = []

    def on_train_batch_end(self, *args: object) -> None:
        bar = self.bar.train_progress_bar
        self.shown.append((bar.n, bar.total))


def fit(tmp_path: Path, max_steps: int, bar: pl.Callback, ckpt: Path | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=2,
        callbacks=[bar, *([Seen(bar)] if isinstance(bar, TQDMProgressBar) else [])],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Tiny(), ckpt_path=ckpt)
    return trainer


def test_tqdm_counts_iterations_with_accumulation_and_resume(tmp_path: Path) -> None:
    bar = TQDMProgressBar(refresh_rate=1)
    trainer = fit(tmp_path, 3, bar)
    seen = next(c for c in trainer.callbacks if isinstance(c, Seen))
    # Two batches per iteration: the count moves every other batch, out of 3.
    assert seen.shown == [(0, 3), (1, 3), (1, 3), (2, 3), (2, 3), (3, 3)]
    ckpt = tmp_path / "at3.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed = TQDMProgressBar(refresh_rate=1)
    trainer = fit(tmp_path, 5, resumed, ckpt)
    seen = next(c for c in trainer.callbacks if isinstance(c, Seen))
    assert seen.shown[0] == (3, 5) and seen.shown[-1] == (5, 5)
    assert resumed.train_progress_bar.initial == 3
    assert resumed.train_progress_bar.desc.startswith("iteration")


def test_rich_counts_iterations(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    bar = RichProgressBar(refresh_rate=1)
    trainer = fit(tmp_path, 3, bar)
    assert trainer.global_step == 3
    assert bar.total_train_batches == 3
