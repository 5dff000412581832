"""The container root as a collection of its images (OME-Zarr 0.5's `bioformats2raw.layout`).

OME-Zarr 0.5's only collection metadata is the (transitional) `bioformats2raw.layout`,
whose `OME` group lists the image paths in `series` and describes each image in
`OME/METADATA.ome.xml`. napari-ome-zarr opens a container through that file.
"""

from __future__ import annotations

import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from dacapo_hydra.data.ome import CHANNEL_AXIS, OME_GROUP, VERSION, first_level, is_image, ome_attrs

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
    series = [s for s in series if is_image(root, s)]
    meta.attrs.update({"ome": {"version": VERSION, "series": series}})
    target = Path(container) / OME_GROUP / OME_XML
    tmp = target.with_name(f".{OME_XML}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(_ome_xml(root, series))
    os.replace(tmp, target)


def _ome_xml(root: zarr.Group, series: Sequence[str]) -> bytes:
    """OME-XML (MetadataOnly) describing the images at `series`, in that order."""
    ET.register_namespace("", _OME_NS)
    ome = ET.Element(f"{{{_OME_NS}}}OME", {"Creator": "dacapo-hydra"})
    for path in series:
        found = first_level(root, path)
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
