"""A datasplit's fingerprint: what a plan needs to know about the data, measured on a sample.

Everything here is measured on bounded reads (:data:`~dacapo_hydra.data.statistics.SAMPLE_VOXELS`
labelled voxels per training dataset, a central box of its labelled region), so a
fingerprint takes seconds on a terabyte volume; :attr:`Fingerprint.sample_voxels`
says how many voxels it saw. Lengths are nm, axes z, y, x (2D: y, x).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_regions
from skimage.segmentation import find_boundaries

from dacapo_hydra.data.statistics import SAMPLE_VOXELS, _central_box, cut_by_edge, object_radii

PERCENTILES = (10, 50, 90)
# Labels with at most this many distinct values are read as classes (one-hot tasks).
MAX_CLASSES = 16


@dataclass(frozen=True)
class Spread:
    """p10, p50 and p90 of a measurement (nm for lengths); None where nothing was measured."""

    p10: float | None = None
    p50: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> Spread:
        """The percentiles of `values` (an empty array gives an empty spread)."""
        if values.size == 0:
            return cls()
        p10, p50, p90 = (float(v) for v in np.percentile(values, PERCENTILES))
        return cls(p10, p50, p90)


@dataclass(frozen=True)
class Fingerprint:
    """What a plan reads about a datasplit; JSON-serialisable (:meth:`to_dict`).

    Attributes:
        dims: spatial axes.
        voxel_size: nm per axis (the raw's).
        anisotropy: each axis's voxel size over the finest.
        labelled_extent_nm: the largest labelled extent per axis over the training
            datasets, nm.
        labelled_extent_voxels: the same in voxels.
        labelled_voxels: labelled voxels over all training datasets.
        objects: objects (connected regions of equal label) in the sample.
        radius: inscribed radius of the objects (nm), percentiles.
        radius_per_axis: per axis, half the longest chord of each object along the
            axis (nm), percentiles: the object's semi-axis.
        foreground_fraction: labelled-foreground voxels over sampled voxels.
        class_frequencies: for labels with few values (one-hot tasks), each value's
            share of the sample; empty otherwise.
        intensity: the normaliser's lo and hi (raw units) and its mode.
        mask_coverage: masked-in voxels over sampled voxels (1 without a mask).
        sample_voxels: voxels read to measure this.
        datasets: training datasets measured.

    """

    dims: int
    voxel_size: tuple[float, ...]
    anisotropy: tuple[float, ...]
    labelled_extent_nm: tuple[float, ...]
    labelled_extent_voxels: tuple[int, ...]
    labelled_voxels: int
    objects: int
    radius: Spread
    radius_per_axis: tuple[Spread, ...]
    foreground_fraction: float
    class_frequencies: dict[str, float] = field(default_factory=dict)
    intensity: dict[str, Any] = field(default_factory=dict)
    mask_coverage: float = 1.0
    sample_voxels: int = 0
    datasets: int = 0

    @property
    def coarse_axes(self) -> tuple[int, ...]:
        """Axes at least twice as coarse as the finest (nnU-Net's line is 3; 2 keeps 40x4x4)."""
        return tuple(a for a, r in enumerate(self.anisotropy) if r >= 2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (lists for tuples)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fingerprint:
        """The fingerprint :meth:`to_dict` wrote."""
        v = dict(values)
        v["radius"] = Spread(**v["radius"])
        v["radius_per_axis"] = tuple(Spread(**s) for s in v["radius_per_axis"])
        for key in ("voxel_size", "anisotropy", "labelled_extent_nm", "labelled_extent_voxels"):
            v[key] = tuple(v[key])
        return cls(**v)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def axis_radii(labels: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Per object and axis, half its longest chord along the axis (nm): (objects, dims).

    Touching objects are parted by taking off their inner boundary layer (as
    :func:`~dacapo_hydra.data.statistics.object_radii` does); each run of what is
    left along the axis (scipy's `label` with a one-axis structure) is a chord two
    voxels shorter than the object's. Objects cut by the array's edge are left out
    when any object is not.

    Example:
        >>> labels = np.zeros((10, 30), np.uint32); labels[3:7, 5:25] = 1
        >>> axis_radii(labels, (40.0, 4.0)).tolist()
        [[80.0, 40.0]]

    """
    regions = label_regions(labels, background=0, connectivity=1)
    count = int(regions.max())
    if count == 0:
        return np.zeros((0, labels.ndim))
    inside = (regions != 0) & ~find_boundaries(regions, mode="inner")
    ids = np.arange(1, count + 1)
    radii = np.zeros((count, labels.ndim))
    for axis in range(labels.ndim):
        structure = np.zeros((3,) * labels.ndim, bool)
        structure[(1,) * axis + (slice(None),) + (1,) * (labels.ndim - axis - 1)] = True
        runs, found = ndimage.label(inside, structure=structure)
        if found == 0:
            continue
        # Linear in the voxels (ndimage's per-label maximum sorts them all).
        lengths = np.bincount(runs.ravel(), minlength=found + 1)[1:].astype(float)
        owner = np.zeros(found + 1, regions.dtype)
        owner[runs.ravel()] = regions.ravel()  # one object per run: any voxel names it
        longest = np.zeros(count + 1)
        np.maximum.at(longest, owner[1:], lengths)
        radii[:, axis] = np.where(longest[1:] > 0, (longest[1:] + 2) * voxel_size[axis] / 2, 0)
    cut = cut_by_edge(regions, ids)
    return radii[~cut] if (~cut).any() else radii


def measure(split: Any, max_voxels: int = SAMPLE_VOXELS) -> Fingerprint:
    """The fingerprint of a :class:`~dacapo_hydra.data.datasplit.DataSplit`'s training data.

    Args:
        split: the opened datasplit (its `train` datasets, `voxel_size`, `normalize`).
        max_voxels: voxels read per training dataset at most.

    """
    voxel_size = tuple(float(v) for v in split.gt_voxel_size)
    dims = len(voxel_size)
    radii, axes, values = [], [], []
    extent = np.zeros(dims)
    labelled = sampled = masked = foreground = 0
    for dataset in split.train:
        roi = dataset.labelled_roi
        extent = np.maximum(extent, np.asarray(roi.shape, float))
        labelled += int(np.prod(np.round(np.asarray(roi.shape) / voxel_size)))
        box = _central_box(roi, voxel_size, max_voxels)
        if box.empty():
            continue
        labels = np.asarray(dataset.gt.read(box))
        mask = np.asarray(dataset.mask.read(box)) > 0 if dataset.mask is not None else None
        sampled += labels.size
        masked += int(mask.sum()) if mask is not None else labels.size
        keep = labels if mask is None else np.where(mask, labels, 0)
        foreground += int(np.count_nonzero(keep))
        radii.append(object_radii(keep, voxel_size))
        axes.append(axis_radii(keep, voxel_size))
        values.append(labels[mask] if mask is not None else labels.ravel())
    found = np.concatenate(radii) if radii else np.zeros(0)
    per_axis = np.concatenate(axes) if axes else np.zeros((0, dims))
    finest = min(voxel_size)
    return Fingerprint(
        dims=dims,
        voxel_size=voxel_size,
        anisotropy=tuple(round(v / finest, 3) for v in voxel_size),
        labelled_extent_nm=tuple(float(e) for e in extent),
        labelled_extent_voxels=tuple(
            int(round(e / v)) for e, v in zip(extent, voxel_size, strict=True)
        ),
        labelled_voxels=labelled,
        objects=int(found.size),
        radius=Spread.of(found),
        radius_per_axis=tuple(Spread.of(per_axis[:, a]) for a in range(dims)),
        foreground_fraction=round(foreground / max(1, sampled), 4),
        class_frequencies=_class_frequencies(values),
        intensity=_intensity(split.normalize),
        mask_coverage=round(masked / max(1, sampled), 4),
        sample_voxels=sampled,
        datasets=len(split.train),
    )


def _class_frequencies(values: list[np.ndarray]) -> dict[str, float]:
    """Each label value's share, where the labels have few values (classes); else empty."""
    if not values:
        return {}
    pooled = np.concatenate([v.ravel() for v in values])
    classes, counts = np.unique(pooled, return_counts=True)
    if classes.size > MAX_CLASSES or pooled.size == 0:
        return {}
    return {
        str(c.item()): round(float(n) / pooled.size, 4)
        for c, n in zip(classes, counts, strict=True)
    }


def _intensity(normalize: Any) -> dict[str, Any]:
    """The normaliser's values: mode, lo, hi (and its percentiles, where measured by them)."""
    values = {"mode": normalize.mode, "lo": normalize.lo, "hi": normalize.hi}
    if normalize.lower is not None:
        values["lower_percentile"] = normalize.lower
        values["upper_percentile"] = normalize.upper
    return values
