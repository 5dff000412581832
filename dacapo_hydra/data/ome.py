"""OME-Zarr (OME-NGFF 0.4 and 0.5) metadata: read it, and write valid OME-Zarr 0.5.

Hand-written: the metadata is a few small JSON documents, and reading and writing
the fields we need is simpler than a runtime dependency (the tests check what is
written with `ome-zarr-models`).

What the writers produce, and why:

- Every image is a multiscale group whose arrays carry `dimension_names` (`c`,
  `z`, `y`, `x`) matching its `axes` (types, and `nanometer` for the spatial
  ones): OME-Zarr 0.5 requires both, and readers take the axis roles from them.
- Level translations follow OME's pixel-centre convention. A level downsampled by
  `f` from `s0` covers the same box, so the centre of its first voxel lies
  `(f - 1) / 2` s0 voxels past s0's first centre. In this package an array's
  `offset` is the start of the voxel grid that all levels of an image share,
  which is `s0`'s translation; :func:`level_translation` and
  :func:`parse_multiscale` convert between the two.
- Segmentations are label images: integer images with `image-label` metadata.
  Those derived from an image live in that image's `labels/` group and are listed
  in its `labels` attribute, as the specification lays out, so viewers
  (napari-ome-zarr, ome-zarr-py) load them as label layers over their image.
- The container root is a collection of its images: OME-Zarr 0.5's only
  collection metadata is the (transitional) `bioformats2raw.layout`, whose `OME`
  group lists the image paths in `series` and describes each image in
  `OME/METADATA.ome.xml`. napari-ome-zarr opens a container through that file.
"""

from __future__ import annotations

import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

SPATIAL_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}
CHANNEL_AXIS = "c"
VERSION = "0.5"
UNIT = "nanometer"
LABELS_GROUP = "labels"
OME_GROUP = "OME"
OME_XML = "METADATA.ome.xml"
BF2RAW_KEY = "bioformats2raw.layout"
_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
# OME-XML pixel types. It has no 64-bit integers (label ids) nor half floats: those are
# described with its nearest type; the zarr array's dtype is what readers use.
_OME_PIXEL_TYPES = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int32",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint32",
    "float16": "float",
    "float32": "float",
    "float64": "double",
    "bool": "bit",
}


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
        if parts[i] == LABELS_GROUP and _is_image(root, image):
            return image, "/".join(parts[i + 1 :])
    return None


def create_image(
    container: str | Path,
    path: str,
    levels: Sequence[ScaleLevel],
    shapes: Sequence[Sequence[int]],
    dtype: str | np.dtype,
    chunks: Sequence[int],
    channels: bool = False,
    label: bool = False,
    label_source: str | None = None,
    method: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    dense: bool = False,
) -> list[zarr.Array]:
    """Create an OME-Zarr 0.5 image (or label image) and make it discoverable.

    Creates the group at `path` with one array per level (zeros, with dimension
    names) and its metadata. A label image at `<image>/labels/<name>` of an existing
    image is listed in that `labels` group (its `image-label` source being the
    image), where viewers look for an image's labels; any other image (a standalone
    label image too) joins the container's collection (:func:`add_to_collection`).

    Args:
        container: zarr v3 container (created if missing).
        path: the new group.
        levels: the levels, finest first.
        shapes: each level's array shape (channel axis included).
        dtype: the arrays' dtype.
        chunks: chunk shape (channel axis included), the same at every level.
        channels: the arrays have a leading channel axis.
        label: write a label image (`image-label`; integer dtype).
        label_source: a label image's source image, relative to it (default: the image
            whose `labels` group holds it; none otherwise).
        method: how the levels were downsampled, if there are several.
        attrs: more group attributes (e.g. `dacapo`).
        dense: the returned arrays write every chunk, even one that holds only the
            fill value (zarr skips those by default), so that a chunk missing
            later is lost data: for raw, whose chunks the data checks require
            (:mod:`dacapo_hydra.data.checks`).

    Returns:
        The arrays, one per level.

    Raises:
        ValueError: a label image with a non-integer dtype.

    """
    dtype = np.dtype(dtype)
    if label and dtype.kind not in "biu":
        raise ValueError(f"{container}:{path}: a label image needs integer values, not {dtype}")
    root = zarr.open_group(str(container), mode="a", zarr_format=3)
    group = root.create_group(path)
    names = dimension_names(len(levels[0].voxel_size), channels)
    arrays = [
        group.create_array(
            level.path,
            shape=tuple(int(s) for s in shape),
            chunks=tuple(int(c) for c in chunks),
            dtype=dtype,
            fill_value=0,
            dimension_names=names,
            config={"write_empty_chunks": dense},
        )
        for level, shape in zip(levels, shapes, strict=True)
    ]
    meta = multiscale_attrs(
        path.rstrip("/").rsplit("/", 1)[-1], levels, channels=channels, method=method
    )
    parent = label_parent(root, path) if label else None
    if label:
        if label_source is None and parent is not None:
            label_source = "../" * (parent[1].count("/") + 2)
        meta["ome"]["image-label"] = image_label_attrs(label_source)
    group.attrs.update({**(attrs or {}), **meta})
    if parent is not None:
        _list_label(root, *parent)
    else:
        add_to_collection(container, path)
    return arrays


def _list_label(root: zarr.Group, image: str, name: str) -> None:
    """Add `name` to the `labels` list of `image`'s labels group (created if missing)."""
    group = root.require_group(f"{image}/{LABELS_GROUP}")
    names = list(ome_attrs(group.attrs.asdict()).get("labels", []))
    if name not in names:
        names.append(name)
    group.attrs.update({"ome": {"version": VERSION, "labels": names}})


def add_to_collection(container: str | Path, *paths: str) -> None:
    """Make the container root a collection that lists the images at `paths` (and earlier ones).

    OME-Zarr 0.5 finds the images of a container through its transitional
    `bioformats2raw.layout` metadata: the root says `bioformats2raw.layout: 3`,
    its `OME` group lists the image paths in `series`, and `OME/METADATA.ome.xml`
    describes each (`<Image ID="Image:<path>">`, sizes, voxel size,
    `<MetadataOnly/>`) in the same order. Images deleted since they were listed
    are dropped. The XML file is replaced atomically.
    """
    root = zarr.open_group(str(container), mode="a", zarr_format=3)
    attrs = root.attrs.asdict()
    ome = dict(attrs.get("ome", {}))
    if ome.get(BF2RAW_KEY) != 3 or ome.get("version") != VERSION:
        root.attrs.update({"ome": {**ome, "version": VERSION, BF2RAW_KEY: 3}})
    meta = root.require_group(OME_GROUP)
    series = [str(s) for s in ome_attrs(meta.attrs.asdict()).get("series", [])]
    series += [p.strip("/") for p in paths if p.strip("/") not in series]
    series = [s for s in series if _is_image(root, s)]
    meta.attrs.update({"ome": {"version": VERSION, "series": series}})
    target = Path(container) / OME_GROUP / OME_XML
    tmp = target.with_name(f".{OME_XML}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(_ome_xml(root, series))
    os.replace(tmp, target)


def _is_image(root: zarr.Group, path: str) -> bool:
    """Whether `path` in `root` is a multiscale image whose first level exists."""
    return _first_level(root, path) is not None


def _first_level(root: zarr.Group, path: str) -> tuple[Multiscale, zarr.Array] | None:
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


def _ome_xml(root: zarr.Group, series: Sequence[str]) -> bytes:
    """OME-XML (MetadataOnly) describing the images at `series`, in that order."""
    ET.register_namespace("", _OME_NS)
    ome = ET.Element(f"{{{_OME_NS}}}OME", {"Creator": "dacapo-hydra"})
    for path in series:
        found = _first_level(root, path)
        if found is None:  # not an image: left out of the series
            continue
        ms, array = found
        sizes = dict(zip(ms.axes, array.shape, strict=True))
        pixels = {
            "ID": f"Pixels:{path}",
            "DimensionOrder": "XYZCT",
            "Type": _OME_PIXEL_TYPES.get(np.dtype(array.dtype).name, "double"),
            "SizeX": str(sizes.get("x", 1)),
            "SizeY": str(sizes.get("y", 1)),
            "SizeZ": str(sizes.get("z", 1)),
            "SizeC": str(sizes.get(CHANNEL_AXIS, 1)),
            "SizeT": "1",
        }
        for i, size in zip(ms.spatial, ms.levels[0].voxel_size, strict=True):
            if ms.axes[i] in ("x", "y", "z"):
                pixels[f"PhysicalSize{ms.axes[i].upper()}"] = repr(float(size))
                pixels[f"PhysicalSize{ms.axes[i].upper()}Unit"] = "nm"
        image = ET.SubElement(ome, f"{{{_OME_NS}}}Image", {"ID": f"Image:{path}", "Name": path})
        element = ET.SubElement(image, f"{{{_OME_NS}}}Pixels", pixels)
        ET.SubElement(element, f"{{{_OME_NS}}}MetadataOnly")
    return ET.tostring(ome, encoding="utf-8", xml_declaration=True)
