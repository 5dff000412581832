"""OME-Zarr (OME-NGFF 0.4 and 0.5) metadata: read it, and describe images as OME-Zarr 0.5.

Hand-written: the metadata is a few small JSON documents, and reading and writing
the fields we need is simpler than a runtime dependency (the tests check what is
written with `ome-zarr-models`). The writers that create images, label images and
the container's collection from these attributes are in :mod:`dacapo_hydra.data.output`.

Level translations follow OME's pixel-centre convention. A level downsampled by
`f` from `s0` covers the same box, so the centre of its first voxel lies
`(f - 1) / 2` s0 voxels past s0's first centre. In this package an array's
`offset` is the start of the voxel grid that all levels of an image share, which
is `s0`'s translation; :func:`level_translation` and :func:`parse_multiscale`
convert between the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

SPATIAL_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}
CHANNEL_AXIS = "c"
VERSION = "0.5"
UNIT = "nanometer"
LABELS_GROUP = "labels"
OME_GROUP = "OME"


@dataclass(frozen=True)
class ScaleLevel:
    """One dataset of a multiscale group: its path, voxel size and offset (nm).

    `offset` is where the level's voxel grid starts, shared by all levels of one
    image (their first level's translation); the translation written for the level
    follows the pixel-centre convention (:func:`level_translation`).
    """

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


def pyramid(
    voxel_size: Sequence[float], offset: Sequence[float], factors: Sequence[int]
) -> list[ScaleLevel]:
    """Levels `s0`, `s1`, ... downsampled by `factors` (per level, all axes) from `s0`.

    Every level covers the same box, so all share `offset`.
    """
    return [
        ScaleLevel(
            f"s{k}",
            tuple(float(v) * f for v in voxel_size),
            tuple(float(o) for o in offset),
        )
        for k, f in enumerate(factors)
    ]


def level_translation(level: ScaleLevel, base_voxel_size: Sequence[float]) -> tuple[float, ...]:
    """The OME translation of `level` in an image whose first level has `base_voxel_size`.

    Pixel centres: the first voxel of a level `f` times coarser than the first
    level covers `f` first-level voxels, so its centre lies `(f - 1) / 2` of them
    past theirs: translation = offset + (voxel size - base voxel size) / 2.
    """
    return tuple(
        float(o) + (float(v) - float(b)) / 2
        for o, v, b in zip(level.offset, level.voxel_size, base_voxel_size, strict=True)
    )


def multiscales_attrs(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Return the `multiscales` list from 0.5 (`ome` key) or 0.4 (top level) attributes."""
    if "ome" in attrs and isinstance(attrs["ome"], Mapping) and "multiscales" in attrs["ome"]:
        return list(attrs["ome"]["multiscales"])
    if "multiscales" in attrs:
        return list(attrs["multiscales"])
    return None


def ome_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The OME-Zarr metadata of a group: under `ome` (0.5), else the attributes (0.4)."""
    if "ome" in attrs and isinstance(attrs["ome"], Mapping):
        return attrs["ome"]
    return attrs


def parse_multiscale(attrs: Mapping[str, Any], where: str) -> Multiscale | None:
    """Parse the first multiscale entry of a group's attributes, or None if there is none.

    Offsets are the start of the levels' shared voxel grid (see the module
    docstring): where the levels' translations differ, they are pixel centres and
    each level's offset is its translation less half its extra voxel size over the
    first level's; where all levels share one translation (files written before
    this convention, and other corner-convention writers), that is the offset.

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
        paths, sizes, shifts = [], [], []
        for ds in entry["datasets"]:
            scale, shift = _transforms(ds.get("coordinateTransformations", []), len(names))
            paths.append(str(ds["path"]))
            sizes.append(tuple(_to_nm(scale[i] * global_scale[i], units[i]) for i in spatial))
            shifts.append(
                tuple(
                    _to_nm(shift[i] * global_scale[i] + global_shift[i], units[i]) for i in spatial
                )
            )
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{where}: malformed OME-NGFF multiscales metadata ({err!r})") from err
    centred = any(not np.allclose(s, shifts[0]) for s in shifts)
    levels = tuple(
        ScaleLevel(
            path,
            size,
            tuple(t - (v - b) / 2 for t, v, b in zip(shift, size, sizes[0], strict=True))
            if centred
            else shift,
        )
        for path, size, shift in zip(paths, sizes, shifts, strict=True)
    )
    return Multiscale(names, types, units, levels)


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


def dimension_names(dims: int, channels: bool = False) -> tuple[str, ...]:
    """Axis names of an image with `dims` spatial axes, after a channel axis if `channels`."""
    spatial = SPATIAL_AXES.get(dims, tuple(f"d{i}" for i in range(dims)))
    return (CHANNEL_AXIS, *spatial) if channels else spatial


def multiscale_attrs(
    name: str,
    levels: Sequence[ScaleLevel],
    axes: Sequence[str] | None = None,
    version: str = VERSION,
    channels: bool = False,
    method: str | None = None,
) -> dict[str, Any]:
    """Group attributes describing `levels` (spatial axes in nanometres).

    Args:
        name: the multiscale's name.
        levels: the levels, finest first, sharing one offset (see :class:`ScaleLevel`).
        axes: names of the spatial axes (default: `y x` or `z y x`).
        version: `0.5` (under `ome`) or `0.4` (top level).
        channels: the arrays have a leading channel axis `c` (not scaled, not moved).
        method: how the levels were downsampled (the multiscale's `type`), if known.

    """
    dims = len(levels[0].voxel_size)
    axes = tuple(axes or SPATIAL_AXES[dims])
    meta_axes: list[dict[str, Any]] = [{"name": a, "type": "space", "unit": UNIT} for a in axes]
    lead_scale: list[float] = []
    lead_shift: list[float] = []
    if channels:
        meta_axes.insert(0, {"name": CHANNEL_AXIS, "type": "channel"})
        lead_scale, lead_shift = [1.0], [0.0]
    base = levels[0].voxel_size
    entry: dict[str, Any] = {
        "name": name,
        "axes": meta_axes,
        "datasets": [
            {
                "path": level.path,
                "coordinateTransformations": [
                    {"type": "scale", "scale": [*lead_scale, *map(float, level.voxel_size)]},
                    {
                        "type": "translation",
                        "translation": [*lead_shift, *level_translation(level, base)],
                    },
                ],
            }
            for level in levels
        ],
    }
    if method is not None:
        entry["type"] = method
    if version == VERSION:
        return {"ome": {"version": VERSION, "multiscales": [entry]}}
    entry["version"] = version
    return {"multiscales": [entry]}


# Channel colours for viewers: the first three as red, green, blue (e.g. the three
# nearest-neighbour affinities), then the secondary colours and grey.
CHANNEL_COLORS = ("FF0000", "00FF00", "0000FF", "FFFF00", "FF00FF", "00FFFF", "FFFFFF")


def omero_attrs(names: Sequence[str], window: Sequence[float]) -> dict[str, Any]:
    """The `omero` metadata naming an image's channels, which viewers show as layer names.

    OME-Zarr 0.5 keeps the transitional `omero` block for channel names (`label`),
    colours and contrast windows. One channel is grey; several cycle through
    :data:`CHANNEL_COLORS`, and the first three are shown (`active`), the rest hidden.

    Args:
        names: one label per channel.
        window: (lo, hi), the values' range: both the window's min/max and its start/end.

    Example:
        >>> omero_attrs(["distance cells"], (-1, 1))["channels"][0]
        {'label': 'distance cells', 'color': 'FFFFFF', 'active': True, 'window': {'min': -1.0, 'max': 1.0, 'start': -1.0, 'end': 1.0}}

    """  # noqa: E501
    lo, hi = (float(v) for v in window)
    colors = ("FFFFFF",) if len(names) == 1 else CHANNEL_COLORS
    return {
        "channels": [
            {
                "label": str(name),
                "color": colors[i % len(colors)],
                "active": i < 3,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
            for i, name in enumerate(names)
        ]
    }


def image_label_attrs(source: str | None = None) -> dict[str, Any]:
    """The `image-label` metadata of a label image; `source`: relative path to its image."""
    label: dict[str, Any] = {"version": VERSION}
    if source is not None:
        label["source"] = {"image": source}
    return label


def label_parent(root: zarr.Group, path: str) -> tuple[str, str] | None:
    """(image, name) where `path` is `<image>/labels/<name>` of an image in `root`, else None.

    The innermost such image wins (`train/labels/labels/x` is a label of the image
    `train/labels`).
    """
    parts = path.strip("/").split("/")
    for i in range(len(parts) - 2, 0, -1):
        image = "/".join(parts[:i])
        if parts[i] == LABELS_GROUP and is_image(root, image):
            return image, "/".join(parts[i + 1 :])
    return None


def is_image(root: zarr.Group, path: str) -> bool:
    """Whether `path` in `root` is a multiscale image whose first level exists."""
    return first_level(root, path) is not None


def first_level(root: zarr.Group, path: str) -> tuple[Multiscale, zarr.Array] | None:
    """The multiscale metadata of the image at `path` and its first level, or None."""
    try:
        group = root[path]
        if not isinstance(group, zarr.Group):
            return None
        ms = parse_multiscale(group.attrs.asdict(), path)
        array = group[ms.levels[0].path] if ms is not None else None
    except (KeyError, IndexError, ValueError):
        return None
    if ms is None or not isinstance(array, zarr.Array):
        return None
    return ms, array
