"""Random crops in world coordinates: raw with context around a ground-truth crop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dacapo_hydra.data.datasplit import Dataset, DataSplit
from dacapo_hydra.data.roi import Roi


@dataclass(frozen=True)
class CropShapes:
    """Network input and output shapes in voxels, and the world context between them."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    voxel_size: tuple[float, ...]

    @property
    def output_size(self) -> tuple[float, ...]:
        """Output crop extent in nm."""
        return tuple(s * v for s, v in zip(self.output_shape, self.voxel_size, strict=True))

    @property
    def context(self) -> tuple[float, ...]:
        """World context (nm) on each side of the output crop."""
        return tuple(
            (i - o) / 2 * v
            for i, o, v in zip(self.input_shape, self.output_shape, self.voxel_size, strict=True)
        )


class CropSampler:
    """Draw crops uniformly from datasets chosen by weight.

    Each crop's ground-truth ROI lies inside the dataset's labelled region on the
    gt voxel grid; raw is read around it with the network's context, padded where
    it leaves the raw volume. Only the chunks a crop touches are read.

    Args:
        datasets: datasets to draw from.
        split: the datasplit (normalisation, pad mode).
        shapes: the network's input/output shapes.

    """

    def __init__(self, datasets: Sequence[Dataset], split: DataSplit, shapes: CropShapes) -> None:
        self.datasets = list(datasets)
        self.split = split
        self.shapes = shapes
        weights = np.array([d.weight for d in self.datasets], float)
        self.probabilities = weights / weights.sum()
        for d in self.datasets:
            roi = d.labelled_roi
            if any(o > s for o, s in zip(shapes.output_size, roi.shape, strict=True)):
                raise ValueError(
                    f"dataset {d.name}: the output crop ({list(shapes.output_size)} nm) is larger "
                    f"than the labelled region {roi} of {d.gt.where}"
                )

    def random_roi(self, dataset: Dataset, rng: np.random.Generator) -> Roi:
        """A gt-grid-aligned output ROI inside the dataset's labelled region."""
        roi = dataset.labelled_roi
        vs = np.asarray(dataset.gt.voxel_size)
        first = np.ceil((np.asarray(roi.begin) - dataset.gt.offset) / vs - 1e-9)
        last = np.floor(
            (np.asarray(roi.end) - self.shapes.output_size - dataset.gt.offset) / vs + 1e-9
        )
        index = rng.integers(first, last + 1)
        begin = tuple(np.asarray(dataset.gt.offset) + index * vs)
        return Roi(begin, self.shapes.output_size)

    def read(self, dataset: Dataset, roi: Roi) -> dict[str, np.ndarray]:
        """Raw (normalised, channels first), gt and mask for an output ROI."""
        raw_roi = roi.grow(self.shapes.context)
        raw = dataset.raw.read_padded(raw_roi, self.split.pad_mode)
        if dataset.raw.num_channels is None:
            raw = raw[None]
        gt = dataset.gt.read(roi)
        mask = (
            dataset.mask.read(roi).astype(np.uint8)
            if dataset.mask is not None
            else np.ones(gt.shape, np.uint8)
        )
        return {"raw": self.split.normalize(raw), "gt": gt[None], "mask": mask[None]}

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One random crop."""
        dataset = self.datasets[rng.choice(len(self.datasets), p=self.probabilities)]
        return self.read(dataset, self.random_roi(dataset, rng))
