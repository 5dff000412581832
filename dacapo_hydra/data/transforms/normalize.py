"""Intensity normalisation: min/max to [0, 1], or mean/std."""

from __future__ import annotations

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.transforms.wrapped import WrappedArray

MODES = ("minmax", "meanstd")


class NormalizeArray(WrappedArray):
    """Intensities as float32: `(v - min) / (max - min)` or `(v - mean) / std`.

    The statistics are given, not measured, so every crop is normalised alike
    without reading the whole volume.

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
            self.shift, self.scale = float(min), float(max - min)
        else:
            if std <= 0:
                raise ValueError(f"{self.where}: normalize std must be positive, got {std}")
            self.shift, self.scale = float(mean), float(std)

    @property
    def dtype(self) -> np.dtype:
        """float32."""
        return np.dtype(np.float32)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Shift and scale to float32."""
        return ((data.astype(np.float32) - self.shift) / self.scale).astype(np.float32)
