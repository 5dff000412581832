"""A toy post-processing route, added the way docs/architecture.md shows a newcomer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import label

from dacapo_hydra.tasks.instances.route import Params, Route, RouteSpec


class ThresholdComponents(Route):
    """Connected components of the voxels whose mean affinity exceeds a level.

    Args:
        levels: mean affinities swept.

    """

    name = "threshold"

    def __init__(self, levels: Sequence[float] = (0.6,)) -> None:
        self.levels = [float(v) for v in levels]

    def grid(self, spec: RouteSpec) -> list[Params]:
        """One parameter set per level."""
        return [{"level": v} for v in self.levels]

    def run(self, prediction: np.ndarray, params: Params, spec: RouteSpec) -> np.ndarray:
        """Instances (*spatial) uint64: components above the level."""
        return label(prediction.mean(axis=0) > float(params["level"]))[0].astype(np.uint64)
