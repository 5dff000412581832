"""Instances from a predicted distance map: seeds at its maxima, grown by watershed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.ndimage import label as connected_components
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.tasks.instances.region_graph import nearest_channels
from dacapo_hydra.tasks.instances.route import Params, Route, RouteSpec

# Distances are quantised to this fraction of the smallest voxel for h-maxima, which
# is exact on integers (scikit-image warns that it is imprecise on floats).
_QUANTUM = 0.01


def distance_watershed(
    distance: np.ndarray,
    foreground: np.ndarray,
    voxel_size: Sequence[float],
    h: float | None = None,
    seed_distance: float | None = None,
) -> np.ndarray:
    """Instances (*spatial) uint64 grown from the maxima of a distance map (nm).

    Seeds are the connected regions of the h-maxima of `distance` (maxima at least
    `h` nm above every path to a higher one: a saddle between two touching objects
    less than `h` deep does not split them), restricted to `distance >
    seed_distance` if given; with `h` None, seeds are the connected regions above
    `seed_distance`. Seeds grow down the map (scikit-image's watershed on
    `-distance`) over `foreground`. A connected part of the foreground that holds
    no seed (its maximum is lower than `h` above its floor, or below
    `seed_distance`) becomes one object of its own rather than being lost.

    Args:
        distance: (*spatial) predicted distance into objects, nm.
        foreground: (*spatial) bool, the voxels that belong to some object.
        voxel_size: nm per voxel (for the quantisation of h-maxima).
        h: nm; the dynamic of the maxima kept as seeds.
        seed_distance: nm; seeds only where the distance exceeds it.

    Examples:
        >>> d = np.array([0, 1, 2, 3, 2, 1.5, 2, 3, 2, 1, 0], float)
        >>> d[3] = 3.2  # two maxima with a saddle of 1.5 (1.7) below them
        >>> distance_watershed(d, d > 0.5, (1.0,), h=1.0).tolist()
        [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0]
        >>> distance_watershed(d, d > 0.5, (1.0,), h=2.0).tolist()
        [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]

    """
    if h is None and seed_distance is None:
        raise ValueError("post-processing: distance watershed needs h or seed_distance")
    foreground = foreground.astype(bool)
    if h is None:
        seeds = foreground & (distance > seed_distance)
    else:
        quantum = _QUANTUM * float(min(voxel_size))
        levels = np.round(np.where(foreground, distance, distance.min()) / quantum)
        levels = (levels - levels.min()).astype(np.int64)
        seeds = h_maxima(levels, max(1, int(round(h / quantum)))).astype(bool) & foreground
        if seed_distance is not None:
            seeds &= distance > seed_distance
    markers, n = connected_components(seeds)
    parts, _ = connected_components(foreground)
    unseeded = np.setdiff1d(np.unique(parts[parts > 0]), np.unique(parts[markers > 0]))
    if unseeded.size:
        extra = np.isin(parts, unseeded)
        markers[extra] = n + np.searchsorted(unseeded, parts[extra]) + 1
    return watershed(-distance, markers=markers, mask=foreground).astype(np.uint64)


def mask_watershed(foreground: np.ndarray, voxel_size: Sequence[float], h: float) -> np.ndarray:
    """Instances (*spatial) uint64 of a foreground mask split at its necks.

    The classic shape-based route: seeds at the h-maxima of the distance (nm) from
    each foreground voxel to the background, grown by watershed. It separates
    touching objects wherever the mask narrows between them, however far apart
    their centres are, so it complements a network whose field of view is smaller
    than the objects.
    """
    foreground = foreground.astype(bool)
    distance = distance_transform_edt(foreground, sampling=voxel_size)
    return distance_watershed(distance, foreground, voxel_size, h=h)


def h_grid(
    values: Sequence[Length] | None,
    voxel_size: Sequence[float],
    object_radius: float | None,
    key: str = "task.seed_h",
) -> list[float]:
    """The h-maxima dynamics (nm) swept: the given lengths, or voxel and object multiples.

    Unset: 0.25, 0.5 and 1 voxel (a neck a quarter voxel deep splits), plus 0.1 of
    the typical object's radius when it was measured (large objects at fine voxel
    sizes have rough masks whose spurious maxima are deeper than a voxel).

    Examples:
        >>> h_grid(None, (250.0, 250.0), None)
        [62.5, 125.0, 250.0]
        >>> h_grid(["1vx", 300], (250.0, 250.0), 3000.0)
        [250.0, 300.0]

    """
    if values:
        found = [to_nm(v, voxel_size, key, min_voxels=0) for v in values]
    else:
        found = [f * float(min(voxel_size)) for f in (0.25, 0.5, 1)]
        if object_radius:
            found.append(0.1 * object_radius)
    return sorted({round(v, 6) for v in found})


def affinity_foreground(affinities: np.ndarray, offsets: Sequence[Sequence[int]]) -> np.ndarray:
    """Where the mean nearest-neighbour affinity exceeds 0.5 (background has 0 to all)."""
    nearest = nearest_channels(offsets) or list(range(len(offsets)))
    return affinities[nearest].mean(axis=0) > 0.5


class MaskWatershed(Route):
    """The predicted foreground split at its necks: `{"route": "mask", "h": h}`.

    The foreground is where the mean nearest-neighbour affinity exceeds 0.5
    (:func:`affinity_foreground`); :func:`mask_watershed` splits it at the h-maxima
    (nm) of its distance transform. For objects wider than the network's field of
    view, whose boundaries with their neighbours the affinities cannot show.

    Args:
        h: the h-maxima dynamics swept (nm or e.g. "0.5vx"); None: see :func:`h_grid`.

    """

    name = "mask"

    def __init__(self, h: Sequence[Length] | None = None) -> None:
        if h is not None and len(h) == 0:
            raise ValueError("h: need at least one value (null: the default grid)")
        self.h = None if h is None else list(h)

    def grid(self, spec: RouteSpec) -> list[Params]:
        """One parameter set per h (nm)."""
        return [{"h": h} for h in h_grid(self.h, spec.voxel_size, spec.object_radius, "h")]

    def run(self, prediction: np.ndarray, params: Params, spec: RouteSpec) -> np.ndarray:
        """Instances of the affinities' foreground (C, *spatial) split with `params["h"]`."""
        return self.run_foreground(affinity_foreground(prediction, spec.offsets), params, spec)

    def run_foreground(self, foreground: np.ndarray, params: Params, spec: RouteSpec) -> np.ndarray:
        """Instances of a foreground mask (*spatial) split with `params["h"]`."""
        return mask_watershed(foreground, spec.voxel_size, h=float(params["h"]))

    def run_grid(
        self, prediction: np.ndarray, grid: Sequence[Params], spec: RouteSpec
    ) -> Iterator[tuple[Params, np.ndarray]]:
        """Every h's instances from one foreground."""
        foreground = affinity_foreground(prediction, spec.offsets)
        for params in grid:
            yield params, self.run_foreground(foreground, params, spec)
