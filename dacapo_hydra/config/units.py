"""Lengths that users write in world units or in voxels, turned into nm.

A length in a config is a number (nm) or a string with a unit: `"50nm"`, `"0.5um"`
(also `µm`), `"6vx"` (also `voxel`, `voxels`, `px`). A voxel is the smallest voxel
size of the data (the in-plane size of anisotropic volumes), so `"6vx"` is 48 nm
at 8 nm and 1500 nm at 1000 x 250 x 250 nm. No library parses units this small, so
it is written here (pint would be a dependency for five units).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Length = float | int | str

_UNITS = {
    "nm": ("nm", 1.0),
    "um": ("nm", 1000.0),
    "µm": ("nm", 1000.0),
    "vx": ("vx", 1.0),
    "voxel": ("vx", 1.0),
    "voxels": ("vx", 1.0),
    "px": ("vx", 1.0),
}
_PATTERN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zµ]*)\s*$")


def to_nm(
    value: Length,
    voxel_size: Sequence[float],
    key: str,
    *,
    min_voxels: float | None = None,
    max_nm: float | None = None,
) -> float:
    """A length in nm from a number (nm) or a string with a unit.

    Args:
        value: the length as written.
        voxel_size: nm per voxel of the data it applies to; a voxel is the smallest.
        key: the config key, for messages.
        min_voxels: the least the length may be, in voxels (None: no bound).
        max_nm: the most the length may be, in nm (e.g. the crop's extent).

    Raises:
        ValueError: naming `key`, for an unknown unit or a length out of bounds.

    Examples:
        >>> to_nm("6vx", (40.0, 8.0, 8.0), "task.scale_factor")
        48.0
        >>> to_nm(50, (8.0, 8.0), "task.scale_factor")
        50.0
        >>> to_nm("0.5um", (250.0, 250.0), "task.clip_distance")
        500.0

    """
    step = float(min(voxel_size))
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a length (nm, or a string such as '6vx'), got {value}")
    if isinstance(value, int | float):
        nm = float(value)
    else:
        match = _PATTERN.match(str(value).lower())
        unit = match.group(2) if match else None
        if match is None or (unit and unit not in _UNITS):
            raise ValueError(
                f"{key}: cannot read {value!r} as a length; write a number (nm) or a number "
                f"with one of the units {sorted(_UNITS)}, e.g. '50nm' or '6vx'"
            )
        kind, factor = _UNITS[unit or "nm"]
        nm = float(match.group(1)) * factor * (step if kind == "vx" else 1.0)
    if min_voxels is not None and nm < min_voxels * step - 1e-9:
        raise ValueError(
            f"{key}: {value!r} is {nm:g} nm, below {min_voxels:g} voxel(s) of {step:g} nm; "
            f"give at least {min_voxels * step:g} nm ('{min_voxels:g}vx')"
        )
    if max_nm is not None and nm > max_nm + 1e-9:
        raise ValueError(f"{key}: {value!r} is {nm:g} nm, more than the crop's {max_nm:g} nm")
    return nm


def lengths_to_nm(
    value: Length | Sequence[Length],
    voxel_size: Sequence[float],
    key: str,
    *,
    min_voxels: float | None = None,
) -> float | list[float]:
    """`to_nm` of a length or of one length per axis (then each in its axis' voxels).

    Examples:
        >>> lengths_to_nm(["2vx", "10vx", "10vx"], (40.0, 8.0, 8.0), "spacing")
        [80.0, 80.0, 80.0]

    """
    if isinstance(value, str | int | float):
        return to_nm(value, voxel_size, key, min_voxels=min_voxels)
    values = list(value)
    if len(values) != len(voxel_size):
        raise ValueError(
            f"{key}: {values} has {len(values)} entries; give one length or {len(voxel_size)}"
        )
    return [
        to_nm(v, (s,), f"{key}[{i}]", min_voxels=min_voxels)
        for i, (v, s) in enumerate(zip(values, voxel_size, strict=True))
    ]


def lengths_to_nm_within(
    value: Length | Sequence[Length],
    voxel_size: Sequence[float],
    key: str,
    extent: Sequence[float],
    *,
    min_voxels: float | None = None,
) -> float | list[float]:
    """`lengths_to_nm`, refusing lengths longer than a crop of `extent` nm per axis.

    One length applies to every axis alike, so it must fit the crop's longest
    axis (along a shorter axis it then spans the whole crop); one length per axis
    must fit its own axis.

    Examples:
        >>> lengths_to_nm_within("10vx", (40.0, 8.0), "spacing", (400.0, 800.0))
        80.0
        >>> lengths_to_nm_within(["5vx", "10vx"], (40.0, 8.0), "spacing", (400.0, 800.0))
        [200.0, 80.0]

    """
    if len(extent) != len(voxel_size):
        raise ValueError(f"{key}: crop extent {list(extent)} does not match {list(voxel_size)}")
    if isinstance(value, str | int | float):
        return to_nm(value, voxel_size, key, min_voxels=min_voxels, max_nm=max(extent))
    values = list(value)
    lengths_to_nm(values, voxel_size, key)  # one length per axis, or an error naming the key
    return [
        to_nm(v, (s,), f"{key}[{i}]", min_voxels=min_voxels, max_nm=e)
        for i, (v, s, e) in enumerate(zip(values, voxel_size, extent, strict=True))
    ]


def to_seconds(value: float | int | str, key: str) -> float:
    """A duration in seconds from a number (seconds) or a string with a unit, read by pandas.

    Raises:
        ValueError: naming `key`, for text that is no duration or a duration not above 0.

    Examples:
        >>> to_seconds("20min", "budget"), to_seconds("1.5h", "budget"), to_seconds(90, "budget")
        (1200.0, 5400.0, 90.0)

    """
    import pandas as pd

    expected = "expected a duration such as '20min', '1.5h', '90s'"
    if isinstance(value, bool):
        raise ValueError(f"{key}: {expected}, got {value}")
    text = str(value).strip()
    bare = _PATTERN.match(text)
    try:
        seconds = (
            float(text)
            if bare and not bare.group(2)  # a bare number: seconds (pandas would read ns)
            else pd.Timedelta(text).total_seconds()
        )
    except ValueError:
        raise ValueError(f"{key}: {expected}, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"{key}: {expected} above zero, got {value!r}")
    return seconds
