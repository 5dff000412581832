"""An array restricted to a world ROI (DaCapo's CropArray)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.roi import Roi


class CropArray(Array):
    """The part of `source` inside the world box `begin` + `shape` (nm, on its grid).

    Args:
        source: the array cropped.
        begin: world corner of the box, nm.
        shape: world extent of the box, nm.

    """

    def __init__(self, source: Array, begin: Sequence[float], shape: Sequence[float]) -> None:
        where = f"crop({source.where})"
        roi = Roi(tuple(float(b) for b in begin), tuple(float(s) for s in shape))
        if roi.dims != source.dims:
            raise ValueError(f"{where}: crop box {roi} has {roi.dims} axes, array {source.dims}")
        if roi.empty() or not source.roi.contains(roi):
            raise ValueError(f"{where}: crop box {roi} is empty or leaves the array's {source.roi}")
        source.to_voxels(roi)  # raises unless the box lies on the voxel grid
        super().__init__(source.voxel_size, roi.begin, where)
        self.source = source
        self.box = roi

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Voxels of the box."""
        return tuple(s.stop - s.start for s in self.source.to_voxels(self.box))

    @property
    def num_channels(self) -> int | None:
        """The source's channels."""
        return self.source.num_channels

    @property
    def dtype(self) -> np.dtype:
        """The source's dtype."""
        return self.source.dtype

    def _read(self, index: tuple[slice, ...]) -> np.ndarray:
        start = [s.start for s in self.source.to_voxels(self.box)]
        shifted = tuple(slice(i.start + o, i.stop + o) for i, o in zip(index, start, strict=True))
        return self.source._read(shifted)
