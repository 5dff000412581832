"""Per-class mask: unannotated classes are unknown, not background."""

from __future__ import annotations

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.concat import ConcatArray
from dacapo_hydra.data.transforms.wrapped import WrappedArray


class MissingAnnotationsMask(WrappedArray):
    """uint8, one channel per channel of a concat: 0 for classes with no annotation.

    As DaCapo's MissingAnnotationsMask: in a dataset where only some classes are
    annotated, the missing classes' channels weigh 0 in the loss, rather than
    teaching the network they are background. Multiplied by `mask` if given.

    Args:
        source: the concatenated ground truth.
        mask: optional spatial annotation mask (no channel axis) on the same grid.

    """

    def __init__(self, source: ConcatArray, mask: Array | None = None) -> None:
        if not isinstance(source, ConcatArray):
            raise ValueError(f"missing_annotations_mask needs a concat source, got {source.where}")
        super().__init__(source, "missing_annotations_mask")
        if mask is not None and (mask.voxel_size != source.voxel_size or mask.roi != source.roi):
            raise ValueError(
                f"{self.where}: mask {mask.where} covers {mask.roi} at {mask.voxel_size} nm; "
                f"expected {source.roi} at {source.voxel_size} nm"
            )
        self.mask = mask
        self.concat = source

    @property
    def num_channels(self) -> int:
        """The concat's channels."""
        return self.concat.num_channels

    @property
    def dtype(self) -> np.dtype:
        """uint8."""
        return np.dtype(np.uint8)

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        shape = tuple(s.stop - s.start for s in index)
        known = np.asarray(self.concat.known, np.uint8).reshape((-1,) + (1,) * len(shape))
        out = np.broadcast_to(known, (len(self.concat.known), *shape)).copy()
        if self.mask is not None:
            out *= (self.mask._read(index) > 0).astype(np.uint8)[None]
        return out
