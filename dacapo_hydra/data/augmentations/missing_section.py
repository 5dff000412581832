"""Missing sections: whole z sections of raw blanked, as PyTorch Connectomics' MissingSection."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type


class RandMissingSectiond(RandomizableTransform, MapTransform):
    """Each z section of `keys` (C, Z, Y, X) is replaced by `value` with probability `prob`.

    Ground truth is left as it is: the network must infer the missing section
    from its neighbours, as in serial-section EM with lost sections.

    Args:
        keys: keys of the raw images.
        prob: probability per section.
        value: the fill value (0: black, as a missing section looks once normalised).

    """

    def __init__(self, keys: Any, prob: float = 0.05, value: float = 0.0) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.section_prob = prob
        self.value = value
        self._missing: np.ndarray = np.zeros(0, bool)

    def randomize(self, depth: int) -> None:
        """Draw which of `depth` sections go missing."""
        super().randomize(None)
        self._missing = self.R.random(depth) < self.section_prob

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Blank the drawn sections of each key."""
        d = dict(data)
        first = d[self.keys[0]]
        if first.ndim != 4:  # (C, Z, Y, X) only: 2D images have no sections
            return d
        self.randomize(first.shape[1])
        if not self._missing.any():
            return d
        for key in self.key_iterator(d):
            image = np.array(d[key], copy=True)
            image[:, self._missing] = self.value
            d[key] = convert_to_dst_type(image, d[key])[0]
        return d
