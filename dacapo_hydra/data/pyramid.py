"""Lower-resolution levels of a written OME-Zarr image: `s1`, `s2`, ... from `s0`.

A pass after the full-resolution one: each level is the previous one reduced by 2
along every spatial axis longer than one voxel (a trailing odd voxel is dropped, as
`dacapo-convert` does), computed chunk by chunk with `dask.array.coarsen` on
threads in this process, so memory holds a few chunks whatever the volume. Images
(predictions) are averaged; label images take the most frequent value of each
2x2(x2) box (ties to the smallest value), so ids stay ids and no object gets a
value none of its voxels had. Each level's translation follows OME's pixel-centre
convention (:func:`~dacapo_hydra.data.ome.level_translation`), the rule the
synthetic data and `dacapo-convert` follow. Rewriting the levels replaces the ones
there, so a rerun (or a rerun with another `levels`) leaves exactly its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from dacapo_hydra.data.ome import (
    ScaleLevel,
    dimension_names,
    multiscale_attrs,
    ome_attrs,
    parse_multiscale,
)

# The multiscale `type` written for each kind of reduction.
MEAN = "mean"
MODE = "mode"


def mode(values: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """The most frequent value over `axis` (all axes if None; ties to the smallest value).

    The reduction `dask.array.coarsen` calls on each block reshaped into boxes.

    Example:
        >>> mode(np.array([[3, 5, 5, 0], [0, 0, 7, 7]]), axis=(1,))
        array([5, 0])

    """
    if axis is None:
        axis = tuple(range(values.ndim))
    moved = np.moveaxis(values, axis, tuple(range(-len(axis), 0)))
    flat = np.sort(moved.reshape(*moved.shape[: moved.ndim - len(axis)], -1), axis=-1)
    # How often each entry occurs in its box, one comparison per entry: memory holds a
    # few arrays of the block's size, not the block times the box squared.
    counts = np.zeros(flat.shape, np.uint8)
    for j in range(flat.shape[-1]):
        counts += flat == flat[..., j : j + 1]
    # Sorted, so the first of the most frequent is the smallest of them.
    pick = np.argmax(counts, axis=-1)
    return np.take_along_axis(flat, pick[..., None], axis=-1)[..., 0]


def _mean(values: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """The mean over `axis`, in float64 before the level's dtype is restored."""
    return values.mean(axis=axis, dtype=np.float64)


def _write_level(
    group: zarr.Group,
    path: str,
    current: zarr.Array,
    source: zarr.Array,
    factors: tuple[int, ...],
    label: bool,
    names: tuple[str, ...],
) -> zarr.Array:
    """Write `current` reduced by `factors` to `group[path]`, in `source`'s chunks and dtype.

    Label images take the mode of each box, other images the mean (rounded for
    integer dtypes).
    """
    import dask.array as da

    chunks = tuple(c * f for c, f in zip(current.chunks, factors, strict=True))
    lazy = da.from_zarr(current, chunks=chunks)
    reduce_fn = mode if label else _mean
    coarse = da.coarsen(reduce_fn, lazy, dict(enumerate(factors)), trim_excess=True)
    if source.dtype.kind in "iub" and not label:
        coarse = da.round(coarse)
    coarse = coarse.astype(source.dtype)
    target = group.create_array(
        path,
        shape=coarse.shape,
        chunks=source.chunks,
        dtype=source.dtype,
        fill_value=0,
        dimension_names=names,
        overwrite=True,
    )
    da.store(coarse.rechunk(source.chunks), target, lock=False, scheduler="threads")
    return target


def _coarser(
    previous: ScaleLevel, path: str, factors: Sequence[int], offset: tuple[float, ...]
) -> ScaleLevel:
    """The level at `path` reduced by `factors` (spatial axes) from `previous`.

    Example:
        >>> _coarser(ScaleLevel("s0", (8.0, 4.0), (0.0, 0.0)), "s1", [1, 2], (0.0, 0.0)).voxel_size
        (8.0, 8.0)

    """
    return ScaleLevel(
        path,
        tuple(v * f for v, f in zip(previous.voxel_size, factors, strict=True)),
        offset,
    )


def write_levels(container: str | Path, image: str, levels: int) -> list[str]:
    """Write levels `s1` .. `s<levels-1>` of `image` from its `s0`, and its multiscale metadata.

    Args:
        container: the zarr container.
        image: the image group (its first level `s0` is written).
        levels: levels in all, `s0` included (1: only `s0`, extra levels removed).

    Returns:
        The level paths, finest first.

    Raises:
        ValueError: `levels` below 1.

    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    root = zarr.open_group(str(container), mode="a")
    group = root[image]
    attrs = group.attrs.asdict()
    ome = dict(ome_attrs(attrs))
    ms = parse_multiscale(attrs, f"{container}:{image}")
    if ms is None:
        raise ValueError(f"{container}:{image} is not an OME-Zarr image")
    base = ms.levels[0]
    for old in ms.levels[1:]:
        if old.path in group:
            del group[old.path]
    source = group[base.path]
    label = "image-label" in ome
    channels = len(ms.axes) > len(ms.spatial)
    scales = [base]
    current = source
    for k in range(1, levels):
        factors = tuple(
            2 if (i in ms.spatial and n >= 2) else 1 for i, n in enumerate(current.shape)
        )
        if all(f == 1 for f in factors):
            break
        path = f"s{k}"
        names = dimension_names(len(ms.spatial), channels)
        target = _write_level(group, path, current, source, factors, label, names)
        spatial_factors = [f for i, f in enumerate(factors) if i in ms.spatial]
        scales.append(_coarser(scales[-1], path, spatial_factors, base.offset))
        current = target
    meta = multiscale_attrs(
        ms_name(attrs, image),
        scales,
        axes=[ms.axes[i] for i in ms.spatial],
        channels=channels,
        method=(MODE if label else MEAN) if len(scales) > 1 else None,
    )
    group.attrs.update({"ome": {**ome, "multiscales": meta["ome"]["multiscales"]}})
    return [s.path for s in scales]


def ms_name(attrs: dict[str, object], image: str) -> str:
    """The multiscale's name as written, else the group's name."""
    entries = ome_attrs(attrs).get("multiscales") or [{}]
    name = entries[0].get("name") if isinstance(entries[0], dict) else None
    return str(name) if name else image.rstrip("/").rsplit("/", 1)[-1]
