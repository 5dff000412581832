"""Misaligned sections: slips and translations in y,x, as PyTorch Connectomics' MisAlignment."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from scipy import ndimage

MODES = ("slip", "translation")


class RandMisalignmentd(RandomizableTransform, MapTransform):
    """With probability `prob`, shift a random z section (or all from it on) in y,x.

    `slip` moves one section; `translation` moves every section from a random
    one onward, as a registration error would. Shifts are whole voxels, up to
    `max_shift` per axis; the uncovered edge is filled by reflection. Ground
    truth is left aligned, so the network learns to see through the error.

    Args:
        keys: keys of the raw images (C, Z, Y, X).
        prob: probability per crop.
        max_shift: largest shift in voxels along y and x.
        mode: `slip` or `translation`.

    """

    def __init__(
        self, keys: Any, prob: float = 0.1, max_shift: int = 4, mode: str = "slip"
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"misalignment mode must be one of {MODES}, got {mode!r}")
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob=prob)
        self.max_shift = int(max_shift)
        self.mode = mode
        self._section = 0
        self._shift = (0, 0)

    def randomize(self, depth: int) -> None:
        """Draw whether, where and how far."""
        super().randomize(None)
        self._section = int(self.R.randint(1, depth)) if depth > 1 else 0
        shift = self.R.randint(-self.max_shift, self.max_shift + 1, size=2)
        self._shift = (int(shift[0]), int(shift[1]))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Shift the drawn section(s) of each key."""
        d = dict(data)
        first = d[self.keys[0]]
        if first.ndim != 4 or self.max_shift < 1:
            return d
        self.randomize(first.shape[1])
        if not self._do_transform or self._shift == (0, 0):
            return d
        end = self._section + 1 if self.mode == "slip" else first.shape[1]
        for key in self.key_iterator(d):
            image = np.array(d[key], copy=True)
            part = image[:, self._section : end]
            image[:, self._section : end] = ndimage.shift(
                part, (0, 0, *self._shift), order=0, mode="mirror"
            )
            d[key] = convert_to_dst_type(image, d[key])[0]
        return d
