"""Checks of a datasplit's data before work starts: cheap, each naming the array at fault.

:func:`check_split` runs when a run is built, before its MLflow run exists, and
raises a one-line :class:`~dacapo_hydra.errors.DataError` at the first problem.
Per dataset, over the region used (below):

1. Chunk index (:func:`~dacapo_hydra.data.chunk_checks.check_chunks`): every
   chunk (every shard, where sharded) of a dense array inside the region must
   exist in the store; zarr would read a missing one as the fill value, so a lost
   raw chunk would train on zeros. Only keys are compared, no voxel is read: the
   array's keys are listed once, or, for a small region of a large array, each
   key is asked for (:func:`~dacapo_hydra.data.store.present_keys`). Raw is dense
   unless its spec says `sparse: true`; ground truth and masks are sparse (zarr
   leaves out chunks that hold only the fill value, as labels often do) unless
   they say `sparse: false`.
2. Raw sample (:func:`~dacapo_hydra.data.chunk_checks.check_raw_sample`): whole
   raw chunks are decoded (one that does not, truncated or corrupt, is named) and
   floating-point raw is searched for NaN and infinity. The sample is the
   diagonal of the region's chunk grid, which puts a sampled chunk in every slab
   of chunks along every axis (so a bad section or a NaN plane is found wherever
   it lies), then an even lattice, up to `SAMPLE_VOXELS` voxels (2**22, 4 Mi
   voxels: 16 MiB of float32) per raw array, whole chunks, at least one. A
   smaller defect is found where a sampled chunk holds it; training still checks
   every crop it reads.
3. Labels (:func:`check_labels`): the ground truth must hold an object (a
   nonzero label, in any channel) where the mask, if any, is nonzero. Chunks are
   read in order up to the first object, usually the first chunk; chunks that a
   plain zarr ground truth with fill value 0 lacks are skipped unread. An empty
   region is read whole (that is what it takes to know it is empty). A training
   dataset meant to hold no object (negative examples) says `allow_empty: true`,
   as long as another training dataset holds objects; a validation dataset must
   hold objects, as an empty ground truth scores a perfect dice whatever the
   prediction.

The region used: for ground truth and mask, the labelled region (for a
validation dataset, its part inside raw); for raw, that region grown by
`margin` on every side (:func:`raw_margin`), inside raw. Arrays built by
transforms are checked through the zarr arrays they read (:func:`zarr_leaves`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Sequence

import numpy as np

from dacapo_hydra.data.array import Array, ZarrArray
from dacapo_hydra.data.chunk_checks import SAMPLE_VOXELS, Cost, check_chunks, check_raw_sample
from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.store import full_box, grid_ranges, present_keys, stored_keys
from dacapo_hydra.data.transforms import ConstantArray
from dacapo_hydra.errors import DataError

log = logging.getLogger(__name__)

# Block edge (voxels) in which a ground truth built by transforms is read.
LABEL_BLOCK = 64


def raw_margin(voxel_size: Sequence[float], *input_shapes: Sequence[int]) -> tuple[float, ...]:
    """How far (nm) past the labelled region raw is read: the largest input's diagonal.

    A crop's raw reaches its context past the labelled region; a rotated or
    deformed crop reaches at most about half the input's diagonal past its
    centre. The whole diagonal covers both, on every axis.

    Args:
        voxel_size: raw voxel size, nm.
        input_shapes: network input shapes in raw voxels (training, evaluation).

    """
    diagonal = max(
        float(np.linalg.norm(np.asarray(s, float) * np.asarray(voxel_size, float)))
        for s in input_shapes
    )
    return (diagonal,) * len(voxel_size)


def zarr_leaves(array: Array) -> list[ZarrArray]:
    """The zarr arrays `array` reads: itself, or those its transform's sources read.

    A transform keeps its sources as attributes (`source`, `sources`, `channels`,
    `mask`, ...), arrays or lists or mappings of them; a constant array reads none.
    """
    if isinstance(array, ZarrArray):
        return [array]
    if isinstance(array, ConstantArray):
        return []
    leaves: dict[int, ZarrArray] = {}
    for value in vars(array).values():
        if isinstance(value, dict):
            items = list(value.values())
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Array):
                leaves.update((id(leaf), leaf) for leaf in zarr_leaves(item))
    return list(leaves.values())


def holds_object(gt: np.ndarray, mask: np.ndarray | None, dims: int) -> bool:
    """Whether ground truth `gt` has a nonzero label where `mask` (if any) is nonzero.

    Either may have a leading channel axis (a voxel counts if any channel does);
    where both have one, channels pair up.

    Examples:
        >>> import numpy as np
        >>> gt = np.array([[0, 2], [0, 0]])
        >>> holds_object(gt, None, 2), holds_object(gt, np.array([[1, 0], [1, 1]]), 2)
        (True, False)

    """
    labels = np.asarray(gt) != 0
    if mask is None:
        return bool(labels.any())
    known = np.asarray(mask) != 0
    if labels.ndim != known.ndim:
        labels = labels.any(0) if labels.ndim > dims else labels
        known = known.any(0) if known.ndim > dims else known
    return bool((labels & known).any())


def _inner(array: Array, roi: Roi) -> Roi:
    """The largest box on `array`'s voxel grid inside `roi` (empty if none)."""
    vs = np.asarray(array.voxel_size)
    offset = np.asarray(array.offset)
    first = np.ceil((np.asarray(roi.begin) - offset) / vs - 1e-6)
    last = np.maximum(first, np.floor((np.asarray(roi.end) - offset) / vs + 1e-6))
    return Roi(tuple((offset + first * vs).tolist()), tuple(((last - first) * vs).tolist()))


def _label_blocks(gt: Array, region: Roi) -> Iterator[Roi]:
    """`region` (on `gt`'s grid) in blocks: the chunks of a plain zarr array, else cubes.

    For a plain zarr ground truth with fill value 0, chunks the store lacks
    (all 0) are left out.
    """
    index = gt.to_voxels(region)
    lead = 0
    skip: set[str] | None = None
    if isinstance(gt, ZarrArray):
        lead = gt.array.ndim - gt.dims
        block = gt.array.chunks[lead:]
        if not np.any(gt.array.fill_value):
            keys = stored_keys(gt.array, full_box(gt.array.shape, (slice(None),) * lead + index))
            stored = present_keys(gt.array, keys)
            skip = set(keys) - stored
    else:
        block = (LABEL_BLOCK,) * gt.dims
    vs = np.asarray(gt.voxel_size)
    for coords in itertools.product(*grid_ranges(block, index)):
        part = tuple(
            slice(max(i * b, s.start), min((i + 1) * b, s.stop))
            for i, b, s in zip(coords, block, index, strict=True)
        )
        if skip and isinstance(gt, ZarrArray):
            lead_box = full_box(gt.array.shape, (slice(None),) * lead + part)
            if all(k in skip for k in stored_keys(gt.array, lead_box)):
                continue
        begin = np.asarray(gt.offset) + vs * [s.start for s in part]
        yield Roi(tuple(begin.tolist()), tuple((vs * [s.stop - s.start for s in part]).tolist()))


def find_object(dataset: Dataset, region: Roi, cost: Cost | None = None) -> tuple[bool, bool]:
    """Whether `dataset`'s ground truth holds an object in `region` (masked in), and any label.

    Reads block by block (:func:`_label_blocks`) up to the first object.

    Returns:
        (an object where the mask is nonzero, any nonzero label at all).

    """
    labelled = False
    for roi in _label_blocks(dataset.gt, region):
        gt = dataset.gt.read(roi)
        mask = dataset.mask.read(roi) if dataset.mask is not None else None
        if cost is not None:
            cost.label_voxels += gt.size
        if holds_object(gt, mask, dataset.gt.dims):
            return True, True
        labelled = labelled or bool(np.any(gt))
    return False, labelled


def check_labels(dataset: Dataset, region: Roi, label: str, cost: Cost | None = None) -> None:
    """Raise unless `dataset`'s ground truth holds an object in `region`, masked in.

    Raises:
        DataError: naming the dataset, its ground truth (and mask) and the region.

    """
    found, labelled = find_object(dataset, region, cost)
    if found:
        return
    if labelled and dataset.mask is not None:
        why = f"every nonzero label lies where the mask {dataset.mask.where} is 0"
    else:
        why = "every label is 0"
    raise DataError(
        f"{label}: the ground truth {dataset.gt.where} holds no object in the labelled "
        f"region {region} ({why}); training on it teaches nothing and validating on it "
        "scores a perfect dice whatever the prediction. Label it, leave it out, or, for "
        "a training dataset of negative examples, mark it `allow_empty: true`"
    )


def _labelled_region(dataset: Dataset, training: bool) -> Roi:
    """Where ground truth is read: the labelled region (validation: inside raw too)."""
    if training:
        return dataset.labelled_roi
    return _inner(dataset.gt, dataset.labelled_roi.intersect(dataset.raw.roi))


def _check_stored(
    dataset: Dataset,
    name: str,
    labelled: Roi,
    raw_region: Roi,
    sample_voxels: int,
    cost: Cost,
) -> None:
    """Steps 1 and 2 of the module docstring for one dataset: chunk index, raw sample."""
    parts = (
        ("raw", dataset.raw, raw_region, True),
        ("gt", dataset.gt, labelled, False),
        ("mask", dataset.mask, labelled, False),
    )
    for part, array, region, dense in parts:
        for leaf in zarr_leaves(array) if array is not None else []:
            if (dense if leaf.sparse is None else not leaf.sparse) and not region.empty():
                check_chunks(leaf, region, f"{name}.{part}", cost)
    if not raw_region.empty():
        for leaf in zarr_leaves(dataset.raw):
            check_raw_sample(leaf, raw_region, f"{name}.raw", sample_voxels, cost)


def check_split(
    split: DataSplit,
    margin: Sequence[float] | None = None,
    sample_voxels: int = SAMPLE_VOXELS,
) -> None:
    """Check the data of every dataset of `split` before work starts (module docstring).

    Args:
        split: the opened datasplit.
        margin: how far (nm per axis) past the labelled region raw is read
            (:func:`raw_margin`); None checks the whole raw array.
        sample_voxels: raw voxels decoded per raw array at most.

    Raises:
        DataError: at the first problem, naming the dataset, the array and where.

    """
    started = time.perf_counter()
    cost = Cost()
    datasets = [(f"datasplit.train[{i}]", d, True) for i, d in enumerate(split.train)] + [
        (f"datasplit.validate[{i}]", d, False) for i, d in enumerate(split.validate)
    ]
    negatives: list[tuple[str, Dataset, Roi]] = []
    objects = False
    for key, dataset, training in datasets:
        name = f"{key} ({dataset.name})"
        labelled = _labelled_region(dataset, training)
        raw_region = dataset.raw.roi
        if margin is not None:
            raw_region = raw_region.intersect(labelled.grow(margin))
        _check_stored(dataset, name, labelled, raw_region, sample_voxels, cost)
        if labelled.empty():
            continue  # refused elsewhere (the sampler, the validator), with its own message
        if training and dataset.allow_empty:
            negatives.append((name, dataset, labelled))
            continue
        check_labels(dataset, labelled, name, cost)
        objects = objects or training
    if negatives and not objects and not any(find_object(d, r, cost)[0] for _, d, r in negatives):
        raise DataError(
            f"no training dataset holds an object: {', '.join(n for n, _, _ in negatives)} "
            "are all marked `allow_empty: true` and all empty; at least one must hold labels"
        )
    log.info(
        "data checks: %d chunk keys compared, %d raw chunks decoded (%d voxels), %d label "
        "voxels read, in %.2f s",
        cost.keys,
        cost.chunks,
        cost.raw_voxels,
        cost.label_voxels,
        time.perf_counter() - started,
    )
