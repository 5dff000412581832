"""uint8 predictions come back within half a step of what was predicted."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dacapo_hydra.inference.encoding import decode_uint8, encode_uint8

RANGES = st.tuples(
    st.floats(-100, 100, allow_nan=False), st.floats(0.01, 100, allow_nan=False)
).map(lambda lo_width: (lo_width[0], lo_width[0] + lo_width[1]))


@given(
    RANGES,
    arrays(np.float32, st.integers(1, 50), elements=st.floats(-300, 300, width=32)),
)
def test_a_value_comes_back_within_half_a_step_of_itself_clipped(
    value_range: tuple[float, float], pred: np.ndarray
) -> None:
    lo, hi = value_range
    back = decode_uint8(encode_uint8(pred, value_range), value_range)
    assert back.dtype == np.float32
    step = (hi - lo) / 255
    np.testing.assert_allclose(back, np.clip(pred, lo, hi), atol=step / 2 * 1.001 + 1e-4)
