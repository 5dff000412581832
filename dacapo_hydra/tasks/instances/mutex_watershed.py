"""Instances from affinities by mutex watershed (mwatershed)."""

from __future__ import annotations

from collections.abc import Sequence

import mwatershed
import numpy as np

from dacapo_hydra.tasks.instances.route import Params, Route, RouteSpec, check_unit_interval
from dacapo_hydra.tasks.instances.size_filter import relabel
from dacapo_hydra.tasks.shifts import shifted_pairs


def mutex_watershed(
    affinities: np.ndarray, offsets: Sequence[Sequence[int]], bias: float
) -> np.ndarray:
    """Instances from affinities by mutex watershed (mwatershed), DaCapo's default.

    Each edge weighs `affinity - bias`: positive edges attract, negative repel, and
    edges are processed strongest first. Voxels with no edge above `bias` (to or
    from them) are background (0); mwatershed would make each a singleton.

    Args:
        affinities: (C, *spatial) in [0, 1]; channel c links x and x + offsets[c].
        offsets: per channel, the offset in voxels.
        bias: affinity at which an edge turns from repulsive to attractive.

    """
    if affinities.shape[0] != len(offsets):
        raise ValueError(
            f"post-processing: {affinities.shape[0]} affinity channels for {len(offsets)} offsets"
        )
    spatial = affinities.shape[1:]
    attracted = np.zeros(spatial, bool)
    for channel, offset in zip(affinities, offsets, strict=True):
        strong = channel > bias
        here, there = shifted_pairs(spatial, offset)
        attracted[here] |= strong[here]
        attracted[there] |= strong[here]
    segments = mwatershed.agglom(
        np.ascontiguousarray(affinities, dtype=np.float64) - bias,
        [[int(o) for o in offset] for offset in offsets],
    )
    return relabel(segments, attracted)


class MutexWatershed(Route):
    """The mutex watershed route on affinities: `{"route": "mutex", "bias": b}`.

    Args:
        biases: affinities at which edges turn attractive, swept (each in (0, 1)).

    """

    name = "mutex"

    def __init__(self, biases: Sequence[float] = (0.3, 0.5, 0.7)) -> None:
        self.biases = check_unit_interval(biases, "biases")

    def grid(self, spec: RouteSpec) -> list[Params]:
        """One parameter set per bias."""
        return [{"bias": b} for b in self.biases]

    def run(self, prediction: np.ndarray, params: Params, spec: RouteSpec) -> np.ndarray:
        """Instances of the affinities (C, *spatial) at `params["bias"]`."""
        return mutex_watershed(prediction, spec.offsets, float(params["bias"]))
