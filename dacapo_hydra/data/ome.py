"""OME-NGFF multiscale metadata (versions 0.4 and 0.5): read and write.

Hand-written: the metadata is a small JSON document and the OME-NGFF python
packages (ome-zarr, pydantic-ome-ngff) pull in dask/fsspec stacks or do not yet
support zarr v3; reading and writing the few fields we need is simpler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SPATIAL_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}


@dataclass(frozen=True)
class ScaleLevel:
    """One dataset of a multiscale group: its path and world transform."""

    path: str
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]


@dataclass(frozen=True)
class Multiscale:
    """The first multiscale entry of an OME-NGFF group, spatial axes only."""

    axes: tuple[str, ...]
    axis_types: tuple[str, ...]
    units: tuple[str | None, ...]
    levels: tuple[ScaleLevel, ...]

    @property
    def spatial(self) -> list[int]:
        """Indices of the spatial axes."""
        return [i for i, t in enumerate(self.axis_types) if t == "space"]


def multiscales_attrs(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Return the `multiscales` list from 0.5 (`ome` key) or 0.4 (top level) attributes."""
    if "ome" in attrs and isinstance(attrs["ome"], Mapping) and "multiscales" in attrs["ome"]:
        return list(attrs["ome"]["multiscales"])
    if "multiscales" in attrs:
        return list(attrs["multiscales"])
    return None


def parse_multiscale(attrs: Mapping[str, Any], where: str) -> Multiscale | None:
    """Parse the first multiscale entry of a group's attributes, or None if there is none.

    Args:
        attrs: the group's attributes.
        where: the group's location, for error messages.

    """
    entries = multiscales_attrs(attrs)
    if not entries:
        return None
    entry = entries[0]
    try:
        axes_meta = entry["axes"]
        names = tuple(a["name"] if isinstance(a, Mapping) else str(a) for a in axes_meta)
        types = tuple(
            a.get("type", "space" if a["name"] in "zyx" else "channel")
            if isinstance(a, Mapping)
            else ("space" if a in "zyx" else "channel")
            for a in axes_meta
        )
        units = tuple(a.get("unit") if isinstance(a, Mapping) else None for a in axes_meta)
        spatial = [i for i, t in enumerate(types) if t == "space"]
        global_scale, global_shift = _transforms(
            entry.get("coordinateTransformations", []), len(names)
        )
        levels = []
        for ds in entry["datasets"]:
            scale, shift = _transforms(ds.get("coordinateTransformations", []), len(names))
            levels.append(
                ScaleLevel(
                    path=str(ds["path"]),
                    voxel_size=tuple(_to_nm(scale[i] * global_scale[i], units[i]) for i in spatial),
                    offset=tuple(
                        _to_nm(shift[i] * global_scale[i] + global_shift[i], units[i])
                        for i in spatial
                    ),
                )
            )
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{where}: malformed OME-NGFF multiscales metadata ({err!r})") from err
    return Multiscale(names, types, units, tuple(levels))


_UNIT_TO_NM = {
    None: 1.0,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometer": 1e3,
    "um": 1e3,
    "millimeter": 1e6,
    "angstrom": 0.1,
    "picometer": 1e-3,
}


def _to_nm(value: float, unit: str | None) -> float:
    if unit not in _UNIT_TO_NM:
        raise ValueError(f"unsupported OME-NGFF unit {unit!r}; expected one of {list(_UNIT_TO_NM)}")
    return float(value) * _UNIT_TO_NM[unit]


def _transforms(
    transforms: Sequence[Mapping[str, Any]], ndim: int
) -> tuple[list[float], list[float]]:
    scale = [1.0] * ndim
    shift = [0.0] * ndim
    for t in transforms:
        if t["type"] == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t["type"] == "translation":
            shift = [float(v) for v in t["translation"]]
    return scale, shift


def multiscale_attrs(
    name: str,
    levels: Sequence[ScaleLevel],
    axes: Sequence[str] | None = None,
    version: str = "0.5",
) -> dict[str, Any]:
    """Build group attributes describing `levels` (spatial axes, nanometres)."""
    dims = len(levels[0].voxel_size)
    axes = tuple(axes or SPATIAL_AXES[dims])
    entry = {
        "name": name,
        "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in axes],
        "datasets": [
            {
                "path": level.path,
                "coordinateTransformations": [
                    {"type": "scale", "scale": list(level.voxel_size)},
                    {"type": "translation", "translation": list(level.offset)},
                ],
            }
            for level in levels
        ],
    }
    if version == "0.5":
        return {"ome": {"version": "0.5", "multiscales": [entry]}}
    entry["version"] = version
    return {"multiscales": [entry]}
