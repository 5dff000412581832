"""From activated predictions to instance labels: seeded and mutex watershed."""

from __future__ import annotations

from collections.abc import Sequence

import mwatershed
import numpy as np
from scipy.ndimage import label as connected_components
from skimage.segmentation import watershed

from dacapo_hydra.tasks.shifts import shifted_pairs


def relabel(segments: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Consecutive uint64 ids 1..n for the segments at `keep`; 0 elsewhere."""
    out = np.zeros(segments.shape, np.uint64)
    _, inverse = np.unique(segments[keep], return_inverse=True)
    out[keep] = inverse.ravel() + 1
    return out


def seeded_watershed(
    distance: np.ndarray, seed_threshold: float, foreground_threshold: float
) -> np.ndarray:
    """Instances grown from seeds over a distance-like map (higher = deeper inside).

    Seeds are the connected components where `distance` > `seed_threshold`; they
    grow down the map (scikit-image's watershed on its negative) over the voxels
    where `distance` > `foreground_threshold`. Foreground no seed reaches stays 0.

    Args:
        distance: (*spatial) predicted distance into objects.
        seed_threshold: level above which voxels are seeds.
        foreground_threshold: level above which voxels belong to some object.

    """
    seeds, _ = connected_components(distance > seed_threshold)
    foreground = distance > foreground_threshold
    labels = watershed(-distance, markers=seeds, mask=foreground)
    return labels.astype(np.uint64)


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
