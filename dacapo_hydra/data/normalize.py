"""One raw-intensity normaliser for training, validation, prediction and export.

Every mode reduces to one affine map, `(x - lo) / (hi - lo)` to float32, so what
a run stores with its checkpoint (and an export writes to `model.json`) is two
numbers, and each place that feeds the network applies the same arithmetic:

- `minmax`: `lo = min`, `hi = max`; a bound not given is the sample's min/max.
- `percentile`: `lo`/`hi` are the `lower`/`upper` percentiles (default 1 and
  99.8) of the sample: works for uint8 EM and uint16 light microscopy alike.
- `meanstd`: `lo = mean`, `hi = mean + std` (mean maps to 0, mean + std to 1),
  the sample's mean/std where not given.
- `none` (`datasplit.normalize: null`): raw as read, cast to float32.

Values are measured once, when a run is built, on a bounded and deterministic
sample of the *training* raw
(:func:`~dacapo_hydra.data.intensity_sample.sample_raw`), and stored in the module's
`meta["normalize"]`; validation, prediction and export read them back
(:class:`~dacapo_hydra.model.spec.ModelSpec`) and never re-measure on the volume at hand.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dacapo_hydra.data.array import Array
from dacapo_hydra.data.intensity_sample import SAMPLE_VOXELS, sample_raw

log = logging.getLogger(__name__)

MODES = ("minmax", "percentile", "meanstd")
KEY = "datasplit.normalize"
DEFAULT_PERCENTILES = (1.0, 99.8)
# A given minmax range is refused when more than this fraction of the sample maps
# above FAR (normalised units), and warned about when more than WARN_FRACTION maps
# outside [1 - FAR, FAR].
FAR = 2.0
REFUSE_FRACTION = 0.05
WARN_FRACTION = 0.01
DEFAULT_MODE = "percentile"
# The options of a `datasplit.normalize` node (its schema:
# :class:`~dacapo_hydra.config.datasplit.NormalizeConfig`): each mode's own, and the shared.
MODE_OPTIONS = {
    "minmax": ("min", "max"),
    "percentile": ("lower", "upper"),
    "meanstd": ("mean", "std"),
}
SHARED_OPTIONS = ("mode", "sample_voxels")


def scale_linear(raw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`(raw - lo) / (hi - lo)` as float32: the one map every normalisation mode reduces to.

    The only written copy of the arithmetic: :class:`Normalizer` calls it, and
    export writes its source into every exported `apply.py`
    (:mod:`dacapo_hydra.export.apply_script`), which runs with numpy alone; so it
    uses nothing but numpy. Python-float `lo`/`hi` keep the arithmetic in float32.

    Example:
        >>> scale_linear(np.array([0, 64, 255], np.uint8), 0.0, 255.0).tolist()
        [0.0, 0.250980406999588, 1.0]

    """
    return ((raw.astype(np.float32) - float(lo)) / (float(hi) - float(lo))).astype(
        np.float32, copy=False
    )


@dataclass(frozen=True)
class Normalizer:
    """Raw intensities to network input: `(x - lo) / (hi - lo)` as float32.

    Small, frozen and picklable, so Dask workers and data-loader processes get a
    copy; :meth:`to_dict`/:meth:`from_dict` carry it through checkpoints and
    `model.json`.

    Attributes:
        mode: `minmax`, `percentile`, `meanstd`, or `none` (raw as read).
        lo: the raw value mapped to 0.
        hi: the raw value mapped to 1.
        lower: the percentile `lo` is (mode `percentile` only).
        upper: the percentile `hi` is (mode `percentile` only).
        measured: whether any of `lo`/`hi` was measured on training data.

    Example:
        >>> import numpy as np
        >>> raw = np.arange(1000, dtype=np.uint16).reshape(10, 100)
        >>> norm = Normalizer.from_config({"mode": "minmax"}, {"train": raw})
        >>> (norm.lo, norm.hi)
        (0.0, 999.0)
        >>> float(norm(raw).max())
        1.0
        >>> Normalizer.from_dict(norm.to_dict()) == norm
        True
        >>> Normalizer.from_config({"mode": "percentile", "lower": 0, "upper": 50}, {"t": raw}).hi
        499.5

    """

    mode: str
    lo: float
    hi: float
    lower: float | None = None
    upper: float | None = None
    measured: bool = False

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "lower", "upper"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        if self.mode not in (*MODES, "none"):
            raise ValueError(f"normalize mode must be one of {(*MODES, 'none')}, got {self.mode!r}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.hi <= self.lo:
            raise ValueError(
                f"normalize ({self.mode}): hi ({self.hi}) must be a finite number above "
                f"lo ({self.lo})"
            )

    @classmethod
    def identity(cls) -> Normalizer:
        """Raw as read (as float32): `datasplit.normalize: null`."""
        return cls("none", 0.0, 1.0)

    @property
    def gain(self) -> float:
        """The map's slope, `1 / (hi - lo)` (bioimage.io's `scale_linear` gain)."""
        return 1.0 / (self.hi - self.lo)

    @property
    def offset(self) -> float:
        """The map's intercept, `-lo / (hi - lo)` (bioimage.io's `scale_linear` offset)."""
        return -self.lo / (self.hi - self.lo)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """`raw` normalised, as a float32 array (a copy unless mode is `none`)."""
        if self.mode == "none":
            return raw.astype(np.float32, copy=False)
        return scale_linear(raw, self.lo, self.hi)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints, `model.json`, logs).

        Besides `mode`, `lo`, `hi`, the mode's own names are spelled out for
        readers (`min`/`max`, `mean`/`std`, `lower`/`upper`); only `mode`, `lo`,
        `hi`, `lower`, `upper` and `measured` are read back.
        """
        out: dict[str, Any] = {"mode": self.mode, "lo": self.lo, "hi": self.hi}
        if self.mode == "minmax":
            out.update(min=self.lo, max=self.hi)
        elif self.mode == "meanstd":
            out.update(mean=self.lo, std=self.hi - self.lo)
        elif self.mode == "percentile":
            out.update(lower=self.lower, upper=self.upper)
        if self.mode != "none":
            out["measured"] = self.measured
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Normalizer:
        """The normaliser :meth:`to_dict` wrote."""
        return cls(
            str(values["mode"]),
            float(values["lo"]),
            float(values["hi"]),
            None if values.get("lower") is None else float(values["lower"]),
            None if values.get("upper") is None else float(values["upper"]),
            bool(values.get("measured", False)),
        )

    @classmethod
    def from_config(
        cls,
        node: Mapping[str, Any] | None,
        raws: Mapping[str, Array | np.ndarray],
        key: str = KEY,
    ) -> Normalizer:
        """The normaliser a `datasplit.normalize` node asks for, measured on training raw.

        Args:
            node: the config node (None: raw as read); keys `mode` (default
                `percentile`), the mode's values (see the module docstring) and
                `sample_voxels` (default 2**21).
            raws: the training datasets' raw arrays, by a name used in messages
                (e.g. `datasplit.train[0] (fib25)`).
            key: the node's config key, for messages.

        Raises:
            ValueError: one line naming the key: an unknown mode or option, a
                value out of range, a measured range that is empty (constant
                training raw), or a given `max` that more than 5% of the sampled
                training raw lies far above.

        Why raise for `max` rather than warn: a range too low for the data (the
        old 0-255 default on uint16 light microscopy) trains silently on inputs
        in the tens or hundreds, which the network's initialisation and the
        intensity augmentations don't expect; it was found only by the poor
        result. A deliberately clipped `max` leaves few voxels (under 5%) more
        than a whole range above it, so the refusal does not hit a sound
        choice. A `min` above much of the data (more than 1% more than a range
        below it) is only warned about, as is up to 5% above `max`: background
        subtraction and bright outliers can be intended.

        """
        if node is None:
            return cls.identity()
        mode, values, budget = _options(node, key)
        lower, upper = _check_given(mode, values, key)
        sample = sample_raw(raws, budget)
        names = ", ".join(raws) or "no training data"
        if sample.size == 0:
            raise ValueError(f"{key}: the training raw ({names}) holds no finite values")
        lo, hi, measured = _measure(mode, values, sample, (lower, upper), key, names)
        if mode == "minmax":
            _check_range(sample, lo, hi, values, key, names)
        normalizer = cls(mode, float(lo), float(hi), lower, upper, measured)
        log.info(
            "%s: %s on %d sampled voxels of %s: raw [%g, %g] -> [0, 1]",
            key,
            mode,
            sample.size,
            names,
            normalizer.lo,
            normalizer.hi,
        )
        return normalizer


def _options(node: Mapping[str, Any], key: str) -> tuple[str, dict[str, float], int]:
    """A `datasplit.normalize` node's mode, given values and sample budget, each checked."""
    options = {k: v for k, v in dict(node).items() if v is not None}
    mode = options.pop("mode", DEFAULT_MODE)
    if mode not in MODES:
        raise ValueError(f"{key}.mode must be one of {MODES}, got {mode!r}")
    for name in options:
        if name in SHARED_OPTIONS:
            continue
        if name not in MODE_OPTIONS[mode]:
            owner = next((m for m, names in MODE_OPTIONS.items() if name in names), None)
            hint = f", or set {key}.mode: {owner}" if owner else ""
            raise ValueError(
                f"{key}.{name} is not an option of mode {mode!r} (which takes "
                f"{', '.join(MODE_OPTIONS[mode])}): remove it or set it to null{hint}"
            )
    values = {n: _number(options[n], f"{key}.{n}") for n in MODE_OPTIONS[mode] if n in options}
    budget = int(_number(options.get("sample_voxels", SAMPLE_VOXELS), f"{key}.sample_voxels"))
    if budget < 1:
        raise ValueError(f"{key}.sample_voxels must be at least 1, got {budget}")
    return mode, values, budget


def _check_given(
    mode: str, values: Mapping[str, float], key: str
) -> tuple[float | None, float | None]:
    """Refuse given values out of range; the percentiles of mode `percentile` (else None)."""
    lower = upper = None
    if mode == "percentile":
        lower = values.get("lower", DEFAULT_PERCENTILES[0])
        upper = values.get("upper", DEFAULT_PERCENTILES[1])
        for name, q in (("lower", lower), ("upper", upper)):
            if not 0 <= q <= 100:
                raise ValueError(f"{key}.{name} must lie in [0, 100], got {q}")
        if lower >= upper:
            raise ValueError(f"{key}.lower ({lower}) must be below {key}.upper ({upper})")
    if mode == "minmax" and values.get("max", math.inf) <= values.get("min", -math.inf):
        raise ValueError(f"{key}.max ({values['max']}) must exceed {key}.min ({values['min']})")
    if mode == "meanstd" and values.get("std", 1.0) <= 0:
        raise ValueError(f"{key}.std must be positive, got {values['std']}")
    return lower, upper


def _measure(
    mode: str,
    values: Mapping[str, float],
    sample: np.ndarray,
    percentiles: tuple[float | None, float | None],
    key: str,
    names: str,
) -> tuple[float, float, bool]:
    """`lo`, `hi` from the given values, the rest measured on `sample`; whether any was measured.

    Raises:
        ValueError: a given minmax bound lies beyond the sample's other bound, or the
            range is empty (constant training raw).

    """
    if mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(sample, list(percentiles)))
        measured = True
    elif mode == "minmax":
        lo = values.get("min", float(sample.min()))
        hi = values.get("max", float(sample.max()))
        measured = len(values) < 2
        if "min" in values and "max" not in values and hi <= lo:
            raise ValueError(
                f"{key}.min ({lo}) is not below the training raw's max ({hi}; {names})"
            )
        if "max" in values and "min" not in values and hi <= lo:
            raise ValueError(
                f"{key}.max ({hi}) is not above the training raw's min ({lo}; {names})"
            )
    else:
        lo = values.get("mean", float(sample.mean()))
        hi = lo + values.get("std", float(sample.std()))
        measured = len(values) < 2
    if hi <= lo:
        raise ValueError(
            f"{key}: mode {mode!r} measures an empty range (lo = hi = {lo:g}) on the "
            f"training raw sampled from {names}: it is constant, or nearly so; give "
            f"{key}.mode: minmax with min and max"
        )
    return lo, hi, measured


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return number


def _check_range(
    sample: np.ndarray, lo: float, hi: float, given: Mapping[str, float], key: str, names: str
) -> None:
    """Refuse a given `max` far below much of the data; warn about other poor fits."""
    scaled = scale_linear(sample, lo, hi)
    above = float(np.mean(scaled > FAR))
    below = float(np.mean(scaled < 1 - FAR))
    q_lo, q_hi = (float(v) for v in np.percentile(sample, DEFAULT_PERCENTILES))
    seen = (
        f"its {DEFAULT_PERCENTILES[0]:g}-{DEFAULT_PERCENTILES[1]:g} percentile range is "
        f"[{q_lo:g}, {q_hi:g}]"
    )
    if "max" in given and above > REFUSE_FRACTION:
        raise ValueError(
            f"{key}.max ({hi:g}) is far below the training raw ({names}): {above:.0%} of the "
            f"sampled voxels would normalise above {FAR:g}; {seen}. Raise {key}.max (and "
            f"min) to the data's range, or use {key}.mode: percentile"
        )
    outside = above + below if "min" in given else above
    if outside > WARN_FRACTION:
        log.warning(
            "%s: %.1f%% of the sampled training raw (%s) normalises outside [%g, %g] with "
            "min %g and max %g; %s",
            key,
            100 * outside,
            names,
            1 - FAR,
            FAR,
            lo,
            hi,
            seen,
        )
