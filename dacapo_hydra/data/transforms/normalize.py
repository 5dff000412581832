"""Intensity normalisation of one array: min/max to [0, 1], or mean/std, with given values."""

from __future__ import annotations

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.transforms.wrapped import WrappedArray

MODES = ("minmax", "meanstd")


class NormalizeArray(WrappedArray):
    """Intensities as float32: `(v - min) / (max - min)` or `(v - mean) / std`.

    The statistics are given, not measured, so every crop is normalised alike
    without reading the whole volume. The arithmetic is the datasplit's
    :class:`~dacapo_hydra.data.normalize.Normalizer` (`meanstd` is its map with
    `lo = mean`, `hi = mean + std`), so the two can't drift apart.

    Args:
        source: the raw array.
        mode: `minmax` or `meanstd`.
        min: value mapped to 0 (`minmax`).
        max: value mapped to 1 (`minmax`).
        mean: value mapped to 0 (`meanstd`).
        std: value mapped to 1 above the mean (`meanstd`).

    """

    def __init__(
        self,
        source: Array,
        mode: str = "minmax",
        min: float = 0.0,  # noqa: A002 - DaCapo's field names
        max: float = 255.0,  # noqa: A002
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__(source, "normalize")
        if mode not in MODES:
            raise ValueError(f"{self.where}: normalize mode must be one of {MODES}, got {mode!r}")
        if mode == "minmax":
            if max <= min:
                raise ValueError(f"{self.where}: normalize max ({max}) must exceed min ({min})")
            self.normalizer = Normalizer(mode, float(min), float(max))
        else:
            if std <= 0:
                raise ValueError(f"{self.where}: normalize std must be positive, got {std}")
            self.normalizer = Normalizer(mode, float(mean), float(mean) + float(std))

    @property
    def dtype(self) -> np.dtype:
        """float32."""
        return np.dtype(np.float32)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Shift and scale to float32."""
        return self.normalizer(data)
