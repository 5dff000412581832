"""Random crops in world coordinates: raw with context around a ground-truth crop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dacapo_hydra.data.array import Array, ZarrArray
from dacapo_hydra.data.chunk_cache import ChunkCache
from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.deform import Deformation, Warp, single_threaded
from dacapo_hydra.data.interpolation import nearest, resample
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.transforms import ConstantArray
from dacapo_hydra.errors import DataError


@dataclass(frozen=True)
class CropShapes:
    """Network input and output shapes in voxels, and the world context between them.

    `voxel_size` is the raw (input) voxel size; `output_voxel_size` the output's
    (finer for super-resolution), the raw's by default.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    output_voxel_size: tuple[float, ...] | None = None

    @property
    def out_voxel_size(self) -> tuple[float, ...]:
        """Output voxel size (nm)."""
        return self.output_voxel_size or self.voxel_size

    @property
    def input_size(self) -> tuple[float, ...]:
        """Input crop extent in nm."""
        return tuple(s * v for s, v in zip(self.input_shape, self.voxel_size, strict=True))

    @property
    def output_size(self) -> tuple[float, ...]:
        """Output crop extent in nm."""
        return tuple(s * v for s, v in zip(self.output_shape, self.out_voxel_size, strict=True))

    @property
    def context(self) -> tuple[float, ...]:
        """World context (nm) on each side of the output crop."""
        return tuple((i - o) / 2 for i, o in zip(self.input_size, self.output_size, strict=True))


class CropSampler:
    """Draw crops from datasets chosen by weight, by the datasplit's sampling strategy.

    Each crop's ground-truth ROI lies inside the dataset's labelled region, on
    both the raw and the gt voxel grids; raw is read around it with the network's
    context, padded where it leaves the raw volume. With a :class:`Deformation`,
    the crops are warped (identically for raw, gt and mask: linear for raw,
    nearest for gt and mask) from just the region they need. Only the chunks a
    crop touches are read.

    Args:
        datasets: datasets to draw from.
        split: the datasplit (normalisation, pad mode, sampling strategy).
        shapes: the network's input/output shapes.
        deformation: elastic/rotation warps, or None.
        chunk_cache: keeps the decoded chunks of the datasets' zarr arrays between
            crops (:class:`~dacapo_hydra.data.chunk_cache.ChunkCache`), or None.

    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        split: DataSplit,
        shapes: CropShapes,
        deformation: Deformation | None = None,
        chunk_cache: ChunkCache | None = None,
    ) -> None:
        self.datasets = list(datasets)
        if chunk_cache is not None:
            for d in self.datasets:
                for top in (d.raw, d.gt, d.mask):
                    for array in top.arrays_within() if top is not None else ():
                        if isinstance(array, ZarrArray):
                            array.cache = chunk_cache
        self.split = split
        self.shapes = shapes
        self.deformation = deformation if deformation is not None and deformation.active else None
        weights = np.array([d.weight for d in self.datasets], float)
        self.probabilities = weights / weights.sum()
        self.lattices = [self._lattice(d) for d in self.datasets]
        self._ones = {id(d): ConstantArray(d.gt) for d in self.datasets if d.mask is None}

    def _lattice(self, d: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Anchor, step and first/last index of crop begins on both voxel grids."""
        shapes = self.shapes
        if d.gt.voxel_size != shapes.out_voxel_size:
            raise ValueError(
                f"dataset {d.name}: gt voxel size {d.gt.voxel_size} ({d.gt.where}) differs from "
                f"the network's output voxel size {shapes.out_voxel_size}; resample the gt "
                "(array type `resample`) or pick another scale level"
            )
        roi = d.labelled_roi
        if any(o > s for o, s in zip(shapes.output_size, roi.shape, strict=True)):
            raise ValueError(
                f"dataset {d.name}: the output crop ({list(shapes.output_size)} nm) is larger "
                f"than the labelled region {roi} of {d.gt.where}"
            )
        raw_vs, gt_vs = np.asarray(d.raw.voxel_size), np.asarray(d.gt.voxel_size)
        step = np.maximum(raw_vs, gt_vs)
        anchor = []
        for axis in range(len(step)):
            found = None
            for k in range(int(round(step[axis] / gt_vs[axis]))):
                b = d.gt.offset[axis] + k * gt_vs[axis]
                r = (b - shapes.context[axis] - d.raw.offset[axis]) / raw_vs[axis]
                if abs(r - round(r)) < 1e-6:
                    found = b
                    break
            if found is None:
                raise ValueError(
                    f"dataset {d.name}: no crop lies on both the raw grid ({d.raw.where}: offset "
                    f"{d.raw.offset}, voxel size {d.raw.voxel_size}) and the gt grid "
                    f"({d.gt.where}: offset {d.gt.offset}, voxel size {d.gt.voxel_size}) "
                    f"with a context of {list(shapes.context)} nm on axis {axis}"
                )
            anchor.append(found)
        a = np.asarray(anchor)
        first = np.ceil((np.asarray(roi.begin) - a) / step - 1e-9)
        last = np.floor((np.asarray(roi.end) - shapes.output_size - a) / step + 1e-9)
        if (last < first).any():
            raise ValueError(
                f"dataset {d.name}: the output crop ({list(shapes.output_size)} nm) does not fit "
                f"the labelled region {roi} of {d.gt.where} on the voxel grids"
            )
        return a, step, first, last

    def _roi_at(self, index: int, k: np.ndarray) -> Roi:
        anchor, step, _, _ = self.lattices[index]
        return Roi(tuple((anchor + k * step).tolist()), self.shapes.output_size)

    def random_roi(self, dataset: Dataset, rng: np.random.Generator) -> Roi:
        """A uniformly drawn output ROI inside the dataset's labelled region, on its grids."""
        i = self._index(dataset)
        _, _, first, last = self.lattices[i]
        return self._roi_at(i, rng.integers(first, last + 1))

    def point_roi(self, dataset: Dataset, rng: np.random.Generator) -> Roi:
        """An output ROI holding one of the dataset's sample points (drawn uniformly)."""
        i = self._index(dataset)
        anchor, step, first, last = self.lattices[i]
        points = dataset.sample_points or []
        p = np.asarray(points[rng.integers(len(points))])
        # begin <= p < begin + size, begin = anchor + k * step
        lo = np.clip(np.floor((p - self.shapes.output_size - anchor) / step) + 1, first, last)
        hi = np.clip(np.floor((p - anchor) / step), first, last)
        lo = np.minimum(lo, hi)  # a point too near the edge: the nearest crop that fits
        return self._roi_at(i, rng.integers(lo, hi + 1))

    def _index(self, dataset: Dataset) -> int:
        for i, d in enumerate(self.datasets):
            if d is dataset:
                return i
        raise ValueError(f"dataset {dataset.name} is not one of this sampler's")

    def draw(self, rng: np.random.Generator) -> tuple[Dataset, Roi]:
        """A dataset chosen by weight and an output ROI by the sampling strategy."""
        dataset = self.datasets[rng.choice(len(self.datasets), p=self.probabilities)]
        sampling = self.split.sampling
        if sampling.strategy == "uniform":
            return dataset, self.random_roi(dataset, rng)
        if sampling.strategy == "points":
            return dataset, self.point_roi(dataset, rng)
        mask = dataset.mask
        if mask is None:
            return dataset, self.random_roi(dataset, rng)
        for _ in range(sampling.max_tries):
            roi = self.random_roi(dataset, rng)
            if sampling.strategy == "reject":
                if float(np.mean(mask.read(roi) > 0)) >= sampling.min_masked:
                    return dataset, roi
            else:
                vs = np.asarray(mask.voxel_size)
                half = np.asarray(self.shapes.output_shape) // 2
                centre = Roi(tuple((np.asarray(roi.begin) + half * vs).tolist()), tuple(vs))
                if np.any(mask.read(centre) > 0):
                    return dataset, roi
        raise RuntimeError(
            f"dataset {dataset.name}: no crop met the {sampling.strategy!r} rule "
            f"(min_masked {sampling.min_masked}) in {sampling.max_tries} draws from {mask.where}"
        )

    def _mask_array(self, dataset: Dataset) -> Array:
        return dataset.mask if dataset.mask is not None else self._ones[id(dataset)]

    def read(self, dataset: Dataset, roi: Roi, warp: Warp | None = None) -> dict[str, np.ndarray]:
        """Raw (normalised, channels first), gt and mask (channels first) for an output ROI."""
        if warp is not None:
            with single_threaded():
                return self._read_warped(dataset, roi, warp)
        raw_roi = roi.grow(self.shapes.context)
        raw = dataset.raw.read_padded(raw_roi, self.split.pad_mode)
        self._check_raw(dataset, raw, raw_roi)
        if dataset.raw.num_channels is None:
            raw = raw[None]
        gt = dataset.gt.read(roi)
        mask = self._mask_array(dataset).read(roi).astype(np.uint8)
        return {
            "raw": self.split.normalize(raw),
            "gt": gt[None] if dataset.gt.num_channels is None else gt,
            "mask": mask[None] if mask.ndim == len(roi.shape) else mask,
        }

    def _check_raw(self, dataset: Dataset, raw: np.ndarray, roi: Roi) -> None:
        if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
            kind = "NaN" if np.isnan(raw).any() else "infinity"
            raise DataError(
                f"dataset {dataset.name}: raw {dataset.raw.where} holds {kind} in {roi}"
            )

    def _read_warped(self, dataset: Dataset, roi: Roi, warp: Warp) -> dict[str, np.ndarray]:
        raw_roi = roi.grow(self.shapes.context)
        vs = dataset.raw.voxel_size
        region = self._region(dataset.raw, *warp.bounds(raw_roi, vs))
        data = dataset.raw.read_padded(region, self.split.pad_mode)
        self._check_raw(dataset, data, region)
        if dataset.raw.num_channels is None:
            data = data[None]
        # Normalisation is affine, so it commutes with linear interpolation: it runs on
        # the crop, not on the (up to twice as large, rotated) region read.
        warped = resample(
            torch.from_numpy(data.astype(np.float32, copy=False)),
            warp.grid(raw_roi, vs, region, vs),
        )
        out = {"raw": self.split.normalize(warped.numpy())}
        gt_vs = dataset.gt.voxel_size
        region = self._region(dataset.gt, *warp.bounds(roi, gt_vs))
        points = warp.voxel_points(roi, gt_vs, region, gt_vs)
        index = None
        for key, array in (("gt", dataset.gt), ("mask", self._mask_array(dataset))):
            # Nearest neighbour by gathering: exact for any label dtype (uint64 ids).
            data = array.read_padded(region, "constant", 0)
            if array.num_channels is None:
                data = data[None]
            if index is None:
                index = nearest(points, data.shape[1:])
            out[key] = np.take(data.reshape(data.shape[0], -1), index, axis=1)
        out["mask"] = out["mask"].astype(np.uint8)
        return out

    @staticmethod
    def _region(array: Array, lo: np.ndarray, hi: np.ndarray) -> Roi:
        """The box on `array`'s grid holding [lo, hi] with one voxel to spare."""
        vs = np.asarray(array.voxel_size)
        lo, hi = lo - vs, hi + vs
        return array.snap(Roi(tuple(lo.tolist()), tuple((hi - lo).tolist())))

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One random crop (warped if the sampler has a deformation)."""
        dataset, roi = self.draw(rng)
        warp = None
        if self.deformation is not None:
            raw_roi = roi.grow(self.shapes.context)
            warp = self.deformation.sample(rng, raw_roi, dataset.raw.voxel_size)
        return self.read(dataset, roi, warp)
