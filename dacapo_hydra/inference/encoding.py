"""uint8 predictions: an activation's range stored as 0..255, and read back.

One pair, so what :class:`~dacapo_hydra.inference.predictor.BlockPredictor` writes and
what :class:`~dacapo_hydra.inference.fragments.Source` reads agree: a value
comes back within half a step, (hi - lo) / 510, of what was predicted (clipped to the
range).

Example:
    >>> import numpy as np
    >>> stored = encode_uint8(np.array([-1.0, 0.0, 0.5, 2.0]), (-1.0, 1.0))
    >>> stored.tolist()
    [0, 128, 191, 255]
    >>> [round(float(v), 3) for v in decode_uint8(stored, (-1.0, 1.0))]
    [-1.0, 0.004, 0.498, 1.0]

"""

from __future__ import annotations

import numpy as np


def encode_uint8(pred: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """`pred` with `value_range` scaled to 0..255 (rounded, clipped), as uint8."""
    lo, hi = value_range
    return np.clip(np.round((pred - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def decode_uint8(data: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Stored uint8 values back in `value_range`, as float32."""
    lo, hi = value_range
    return (data.astype(np.float32) / 255 * (hi - lo) + lo).astype(np.float32)
