"""Statistics of the training labels that tasks derive their default lengths from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_regions
from skimage.segmentation import clear_border, find_boundaries

from dacapo_hydra.data.roi import Roi

# Voxels read per dataset at most (a central box of the labelled region): the
# measurement stays under a second whatever the volume's size.
SAMPLE_VOXELS = 2**21


def _central_box(roi: Roi, voxel_size: Sequence[float], voxels: int) -> Roi:
    """The central part of `roi` with about `voxels` voxels, on the voxel grid."""
    shape = np.round(np.asarray(roi.shape) / voxel_size).astype(int)
    factor = min(1.0, (voxels / max(1, int(np.prod(shape)))) ** (1 / len(shape)))
    keep = np.maximum(1, np.floor(shape * factor)).astype(int)
    start = (shape - keep) // 2
    begin = np.asarray(roi.begin) + start * np.asarray(voxel_size)
    return Roi(tuple(begin.tolist()), tuple((keep * np.asarray(voxel_size)).tolist()))


def cut_by_edge(regions: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Whether each of `ids` touches the array's edge (scikit-image's `clear_border`)."""
    return ~np.isin(ids, clear_border(regions))


def object_radii(labels: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Inscribed radius (nm) of every object: the largest distance from inside it to its edge.

    Objects are the connected regions of equal non-zero label. Objects cut by the
    array's edge are left out when any object is not (their radius is unknown).
    """
    regions = label_regions(labels, background=0, connectivity=1)
    if regions.max() == 0:
        return np.zeros(0)
    inside = (regions != 0) & ~find_boundaries(regions, mode="inner")
    distance = ndimage.distance_transform_edt(inside, sampling=voxel_size)
    # The inner boundary layer was taken off so touching objects part: add it back.
    distance += min(voxel_size)
    ids = np.arange(1, regions.max() + 1)
    # Linear in the voxels (ndimage's per-label maximum sorts them all: seconds at 2**21).
    radii = np.zeros(ids.size + 1)
    np.maximum.at(radii, regions.ravel(), distance.ravel())
    radii = radii[1:]
    cut = cut_by_edge(regions, ids)
    return radii[~cut] if (~cut).any() else radii


def typical_object_radius(gts: Sequence[tuple[object, Roi]]) -> float | None:
    """The median inscribed radius (nm) of the objects in the training labels, or None.

    Args:
        gts: (ground-truth array, labelled ROI) per training dataset; each array
            has `voxel_size` and `read(roi)`. A central box of at most
            `SAMPLE_VOXELS` voxels of each is read.

    Examples:
        >>> import numpy as np
        >>> labels = np.zeros((20, 20), np.uint64); labels[5:15, 5:15] = 1
        >>> float(object_radii(labels, (4.0, 4.0))[0])
        20.0

    """
    radii = []
    for array, roi in gts:
        voxel_size = tuple(float(v) for v in array.voxel_size)  # type: ignore[attr-defined]
        box = _central_box(roi, voxel_size, SAMPLE_VOXELS)
        if box.empty():
            continue
        labels = np.asarray(array.read(box))  # type: ignore[attr-defined]
        radii.append(object_radii(labels, voxel_size))
    found = np.concatenate(radii) if radii else np.zeros(0)
    return float(np.median(found)) if found.size else None
