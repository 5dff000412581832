"""Writing outputs: OME-Zarr images and label images, and the resumable arrays of inference.

What the writers produce, and why:

- Every image is a multiscale group whose arrays carry `dimension_names` (`c`,
  `z`, `y`, `x`) matching its `axes` (types, and `nanometer` for the spatial
  ones): OME-Zarr 0.5 requires both, and readers take the axis roles from them.
  Level translations follow the pixel-centre convention of :mod:`dacapo_hydra.data.ome`.
- Segmentations are label images: integer images with `image-label` metadata.
  Those derived from an image live in that image's `labels/` group and are listed
  in its `labels` attribute, as the specification lays out, so viewers
  (napari-ome-zarr, ome-zarr-py) load them as label layers over their image.
- The container root is a collection of its images: OME-Zarr 0.5's only
  collection metadata is the (transitional) `bioformats2raw.layout`, whose `OME`
  group lists the image paths in `series` and describes each image in
  `OME/METADATA.ome.xml` (:mod:`dacapo_hydra.data.collection`). napari-ome-zarr
  opens a container through that file.

Prediction and post-processing write into such images block by block, resumably
(:func:`open_output` creates one or reopens the very same array; a ledger of
finished blocks lives beside it in :data:`LEDGER_DIR`), and save their per-block
records with :func:`save_npz`, which lands atomically.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.collection import add_to_collection
from dacapo_hydra.data.ome import (
    LABELS_GROUP,
    VERSION,
    ScaleLevel,
    dimension_names,
    image_label_attrs,
    label_parent,
    multiscale_attrs,
    ome_attrs,
)
from dacapo_hydra.data.roi import Roi

# Block ledgers and intermediate files of an output: `<container>/<LEDGER_DIR>/<dataset>`.
LEDGER_DIR = ".dacapo_blocks"


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
    omero: Mapping[str, Any] | None = None,
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
        omero: the image's `omero` metadata: channel names, colours, windows
            (:func:`~dacapo_hydra.data.ome.omero_attrs`).

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
    arrays = _create_levels(group, levels, shapes, dtype, chunks, channels, dense)
    meta, parent = _image_attrs(root, path, levels, channels, method, label, label_source, omero)
    group.attrs.update({**(attrs or {}), **meta})
    _register(container, root, path, parent)
    return arrays


def _image_attrs(
    root: zarr.Group,
    path: str,
    levels: Sequence[ScaleLevel],
    channels: bool,
    method: str | None,
    label: bool,
    label_source: str | None,
    omero: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """The image's OME metadata (see create_image), and the image a label image belongs to.

    Returns:
        The attributes, and (image, name) where `path` is a label image at
        `<image>/labels/<name>` of an existing image, else None.

    """
    meta = multiscale_attrs(
        path.rstrip("/").rsplit("/", 1)[-1], levels, channels=channels, method=method
    )
    parent = label_parent(root, path) if label else None
    if label:
        if label_source is None and parent is not None:
            label_source = "../" * (parent[1].count("/") + 2)
        meta["ome"]["image-label"] = image_label_attrs(label_source)
    if omero is not None:
        meta["ome"]["omero"] = dict(omero)
    return meta, parent


def _register(
    container: str | Path, root: zarr.Group, path: str, parent: tuple[str, str] | None
) -> None:
    """List the new image in its image's `labels` group if it has one, else in the collection."""
    if parent is not None:
        _list_label(root, *parent)
    else:
        add_to_collection(container, path)


def _create_levels(
    group: zarr.Group,
    levels: Sequence[ScaleLevel],
    shapes: Sequence[Sequence[int]],
    dtype: np.dtype,
    chunks: Sequence[int],
    channels: bool,
    dense: bool,
) -> list[zarr.Array]:
    """One zero-filled array per level in `group`, with dimension names (see create_image)."""
    names = dimension_names(len(levels[0].voxel_size), channels)
    return [
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


def _list_label(root: zarr.Group, image: str, name: str) -> None:
    """Add `name` to the `labels` list of `image`'s labels group (created if missing)."""
    group = root.require_group(f"{image}/{LABELS_GROUP}")
    names = list(ome_attrs(group.attrs.asdict()).get("labels", []))
    if name not in names:
        names.append(name)
    group.attrs.update({"ome": {"version": VERSION, "labels": names}})


def check_output(
    container: str | Path,
    dataset: str,
    shape: Sequence[int],
    dtype: str | np.dtype,
    chunks: Sequence[int],
    voxel_size: Sequence[float],
    offset: Sequence[float],
) -> bool:
    """Whether the output exists already as this very array (to resume); writes nothing.

    Raises:
        ValueError: if the path holds something else, naming it and what was expected.

    """
    path = Path(container)
    if not path.exists():
        return False
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a non-zarr folder
        raise ValueError(
            f"output {str(container)!r} exists and is not a zarr group: {err}"
        ) from err
    if dataset not in root:
        return False
    try:
        existing = ZarrArray.open(container, dataset)
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"output {container}:{dataset} already holds something that is not a prediction "
            f"array ({err.args[0] if err.args else err}); choose another output or delete it"
        ) from None
    same = (
        existing.array.shape == tuple(shape)
        and existing.dtype == np.dtype(dtype)
        and existing.array.chunks == tuple(chunks)
        and np.allclose(existing.voxel_size, voxel_size)
        and np.allclose(existing.offset, offset)
    )
    if not same:
        raise ValueError(
            f"output {container}:{dataset} already holds a different array "
            f"(shape {existing.array.shape}, {existing.dtype}, chunks {existing.array.chunks}, "
            f"voxel size {existing.voxel_size}, offset {existing.offset}); expected shape "
            f"{tuple(shape)}, {np.dtype(dtype)}, chunks {tuple(chunks)}, voxel size "
            f"{tuple(voxel_size)}, offset {tuple(offset)}. Choose another output or delete it."
        )
    return True


def open_output(
    container: str | Path,
    dataset: str,
    roi: Roi,
    voxel_size: Sequence[float],
    channels: int | None,
    dtype: str,
    chunks: Sequence[int],
    attrs: dict[str, Any] | None = None,
    label: bool = False,
    omero: Mapping[str, Any] | None = None,
) -> zarr.Array:
    """Create the output array (an OME-Zarr 0.5 multiscale group with `s0`), or reopen it.

    An existing output is reused (to resume) only if it is the same array; else
    a ValueError names it, and nothing is written. A new output is made
    discoverable (:func:`create_image`): an image joins the container's
    collection; a label image at `<image>/labels/<name>` is listed in its image's
    `labels` group.

    Args:
        container: zarr container (created if missing).
        dataset: the multiscale group; the array is `<dataset>/s0`.
        roi: world ROI the array covers.
        voxel_size: nm per voxel.
        channels: channels of a leading channel axis, or None for no channel axis.
        dtype: numpy dtype name.
        chunks: spatial chunk shape.
        attrs: extra group attributes (under `dacapo`).
        label: a label image (segmentation): integer values, `image-label` metadata.
        omero: channel names and windows (:func:`~dacapo_hydra.data.ome.omero_attrs`).

    """
    spatial = roi.voxel_shape(voxel_size)
    shape = spatial if channels is None else (channels, *spatial)
    chunk_shape = tuple(int(c) for c in chunks)
    if channels is not None:
        chunk_shape = (channels, *chunk_shape)
    if check_output(container, dataset, shape, dtype, chunk_shape, voxel_size, roi.begin):
        return zarr.open_group(str(container), mode="r+")[f"{dataset}/s0"]
    # A ledger without its array belongs to an output deleted since: forget it.
    clear_ledger(container, dataset)
    (array,) = create_image(
        container,
        dataset,
        [ScaleLevel("s0", tuple(float(v) for v in voxel_size), tuple(roi.begin))],
        [shape],
        dtype,
        chunk_shape,
        channels=channels is not None,
        label=label,
        attrs={"dacapo": attrs} if attrs else None,
        omero=omero,
    )
    return array


def clear_ledger(container: str | Path, dataset: str) -> None:
    """Forget which blocks of an output finished (the next run redoes all of them)."""
    shutil.rmtree(Path(container) / LEDGER_DIR / dataset, ignore_errors=True)


def check_overwritable(container: str | Path, dataset: str) -> None:
    """Whether `overwrite` may remove `<container>/<dataset>`; writes nothing.

    Raises:
        ValueError: the dataset is not a group strictly inside the container, or the
            container exists and is not a zarr group.

    """
    root = Path(container).resolve()
    if root not in (root / dataset).resolve().parents:
        raise ValueError(
            f"overwrite: {dataset!r} is not a group inside {container}; nothing to replace"
        )
    if Path(container).exists():
        try:
            zarr.open_group(str(container), mode="r")
        except Exception as err:  # zarr raises several types for a non-zarr folder
            raise ValueError(
                f"output {str(container)!r} exists and is not a zarr group: {err}"
            ) from None


def remove_output(container: str | Path, dataset: str) -> None:
    """Remove an output group and its ledger (checked by :func:`check_overwritable`)."""
    check_overwritable(container, dataset)
    clear_ledger(container, dataset)
    shutil.rmtree(Path(container) / dataset, ignore_errors=True)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz so that a kill leaves either the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
