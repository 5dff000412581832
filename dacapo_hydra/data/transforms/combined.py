"""Base of transforms that combine several arrays on one grid."""

from __future__ import annotations

from collections.abc import Sequence

from dacapo_hydra.data.array import Array


class CombinedArray(Array):
    """Several source arrays with the same voxel size and ROI, read together.

    Args:
        sources: the arrays (at least one).
        name: the transform's name, for messages.

    """

    def __init__(self, sources: Sequence[Array], name: str) -> None:
        if not sources:
            raise ValueError(f"{name}: needs at least one source array")
        first = sources[0]
        where = f"{name}({', '.join(s.where for s in sources)})"
        for s in sources[1:]:
            if s.voxel_size != first.voxel_size or s.roi != first.roi:
                raise ValueError(
                    f"{where}: {s.where} covers {s.roi} at {s.voxel_size} nm but "
                    f"{first.where} covers {first.roi} at {first.voxel_size} nm; "
                    "sources must share voxel size and ROI (crop or resample them first)"
                )
        super().__init__(first.voxel_size, first.offset, where)
        self.sources = list(sources)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The sources' spatial shape."""
        return self.sources[0].spatial_shape
