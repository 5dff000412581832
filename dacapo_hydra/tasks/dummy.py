"""A trivial task for tests: foreground as a number, L1 loss (DaCapo's DummyTask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dacapo_hydra.evaluation.binary import overlap_scores
from dacapo_hydra.tasks.base import Params, Task


class DummyTask(Task):
    """Learn 1 on foreground (any non-zero label), 0 elsewhere, with a weighted L1 loss.

    Post-processing thresholds at 0.5 (output: (1, *spatial) uint8); the scores are
    dice and jaccard of the foreground.
    """

    criterion = "dice"

    def __init__(
        self, dims: int, voxel_size: Sequence[float], object_radius: float | None = None
    ) -> None:
        super().__init__(dims, voxel_size, object_radius)

    @property
    def num_channels(self) -> int:
        """One channel."""
        return 1

    @property
    def channel_names(self) -> list[str]:
        """The one foreground channel."""
        return ["foreground"]

    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Foreground (1, *spatial) float32 and the mask as weight."""
        return (gt != 0).astype(np.float32)[None], mask.astype(np.float32)[None]

    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted mean absolute error."""
        return (weight * (prediction - target).abs()).mean()

    def parameter_grid(self) -> list[Params]:
        """A single threshold."""
        return [{"threshold": 0.5}]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Foreground (1, *spatial) uint8 above the threshold."""
        return (prediction > float(params["threshold"])).astype(np.uint8)

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Dice and jaccard of the foreground."""
        scores = overlap_scores(output[0], gt != 0, mask)
        return {"dice": scores["dice"], "jaccard": scores["jaccard"]}

    def score_directions(self) -> dict[str, bool]:
        """Both scores: higher is better."""
        return {"dice": True, "jaccard": True}
