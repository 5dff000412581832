"""Find a dataset in a zarr container: the array, its multiscale level, voxel size and offset.

A dataset path names an array, or an OME-NGFF multiscale image (a group) whose
level is picked by voxel size. Voxel size and offset come from the image's
multiscales metadata, or from `voxel_size`/`resolution` and `offset` attributes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.errors import MetadataValidationError

from dacapo_hydra.data.ome import LABELS_GROUP, OME_GROUP, parse_multiscale
from dacapo_hydra.data.roi import as_tuple


def open_node(
    path: Path, dataset: str, scale_voxel_size: Sequence[float] | None
) -> tuple[zarr.Array, str, tuple[float, ...] | None, tuple[float, ...] | None]:
    """The zarr array `dataset` names in the container at `path`, and what it says of it.

    Returns the array (the picked level where `dataset` is a multiscale group),
    its location for messages, and its metadata's voxel size and offset (None
    where absent). JSON errors in metadata pass through, for the caller to name
    the file.
    """
    container = str(path)
    where = f"{container}:{dataset}"
    try:
        root = zarr.open_group(container, mode="r")
    except (json.JSONDecodeError, UnicodeDecodeError, MetadataValidationError):
        raise
    except Exception as err:  # zarr raises several types for a non-zarr folder
        raise ValueError(f"{container!r} is not a readable zarr group: {err}") from err
    try:
        node = root[dataset]
    except KeyError:
        available = sorted(list_arrays(root))
        raise KeyError(
            f"dataset {dataset!r} not found in zarr container {container!r}; "
            f"it holds: {', '.join(available) or 'nothing'}"
        ) from None
    meta_vs: tuple[float, ...] | None = None
    meta_off: tuple[float, ...] | None = None
    if isinstance(node, zarr.Group):
        ms = parse_multiscale(node.attrs.asdict(), where)
        if ms is None:
            raise ValueError(f"{where} is a group without OME-NGFF multiscales metadata")
        level = ms.levels[0]
        if scale_voxel_size is not None:
            want = as_tuple(scale_voxel_size, "scale_voxel_size")
            matches = [lv for lv in ms.levels if np.allclose(lv.voxel_size, want)]
            if not matches:
                have = [lv.voxel_size for lv in ms.levels]
                raise ValueError(
                    f"{where}: no scale level has voxel size {want}; levels have {have}"
                )
            level = matches[0]
        node = node[level.path]
        where = f"{where}/{level.path}"
        meta_vs, meta_off = level.voxel_size, level.offset
    else:
        meta_vs, meta_off = metadata_for_array(root, dataset, node, where)
    return node, where, meta_vs, meta_off


def list_arrays(group: zarr.Group, prefix: str = "") -> list[str]:
    """Paths of the arrays and multiscale images in `group` (for "it holds: ..." messages)."""
    out = []
    with warnings.catch_warnings():
        # Block ledgers and OME/METADATA.ome.xml are files zarr does not know; no arrays.
        warnings.filterwarnings("ignore", "Object at .* is not recognized", UserWarning)
        members = list(group.members())
    for name, node in members:
        path = f"{prefix}{name}"
        if not prefix and name == OME_GROUP:
            continue
        if isinstance(node, zarr.Group):
            if parse_multiscale(node.attrs.asdict(), path) is not None:
                out.append(path)
                # An image's label images live in its `labels` group.
                labels = node.get(LABELS_GROUP)
                if isinstance(labels, zarr.Group):
                    out.extend(list_arrays(labels, f"{path}/{LABELS_GROUP}/"))
            else:
                out.extend(list_arrays(node, f"{path}/"))
        else:
            out.append(path)
    return out


def metadata_for_array(
    root: zarr.Group, dataset: str, node: zarr.Array, where: str
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """An array's voxel size and offset from its parent's multiscales or its attributes."""
    parent_path, _, name = dataset.rstrip("/").rpartition("/")
    parent = root[parent_path] if parent_path else root
    ms = parse_multiscale(parent.attrs.asdict(), where)
    if ms is not None:
        for level in ms.levels:
            if level.path == name:
                return level.voxel_size, level.offset
    attrs = node.attrs.asdict()
    vs = attrs.get("voxel_size", attrs.get("resolution"))
    off = attrs.get("offset")
    return (
        as_tuple(vs, f"{where} voxel_size") if vs is not None else None,
        as_tuple(off, f"{where} offset") if off is not None else None,
    )
