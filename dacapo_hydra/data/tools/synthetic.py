"""Synthetic volumes written as OME-Zarr 0.5 (zarr v3): EM-like or nuclei.

Each container holds `train/` and `validate/` groups (and, with `test=True`, a held-out
`test/` volume for scoring). The `em` kind (the default) has
the image `raw` (uint8) and its label images `raw/labels/labels` (uint64 cell
instances), `raw/labels/organelles` (uint64 blob instances) and `raw/labels/mask`
(uint8, 1 where annotated). Cells are warped Voronoi
regions separated by bright membranes; organelle-like blobs sit inside cells;
the image is blurred and noisy. A slab at the far end of the last axis is left
unannotated (labels 0, mask 0), as in real partially annotated data.

The `nuclei` kind imitates light-microscopy nuclei (see
dacapo_hydra.data.tools.synthetic_nuclei): `raw` (uint16 counts), `labels` (uint64 touching
nuclei) and `mask` (all 1), with 250 nm pixels (1000 nm along z in 3D) by default.

Each array is an OME-Zarr 0.5 image with levels `s0` and `s1` (2x coarser); the
annotations are label images in the image's `labels/` group (listed there, with
`image-label.source` pointing back at `raw`), and the root lists the images
(:func:`~dacapo_hydra.data.output.add_to_collection`), so a viewer opening the
container (napari-ome-zarr, neuroglancer) pairs each raw with its labels.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.segmentation import find_boundaries

from dacapo_hydra.data.ome import pyramid
from dacapo_hydra.data.output import add_to_collection, create_image
from dacapo_hydra.data.tools.synthetic_nuclei import DEFAULT_VOXEL_SIZE, generate_nuclei

log = logging.getLogger(__name__)

PARAMS_KEY = "dacapo_synthetic"
# Stored with the parameters: containers of an older format are regenerated.
FORMAT = "ome-zarr-0.5-labels"


def dataset_path(split: str, name: str) -> str:
    """Where the array `name` (raw, labels, organelles, mask) of `split` lives in a container.

    Example:
        >>> dataset_path("train", "raw"), dataset_path("validate", "mask")
        ('train/raw', 'validate/raw/labels/mask')

    """
    return f"{split}/raw" if name == "raw" else f"{split}/raw/labels/{name}"


KINDS = ("em", "nuclei")
DEFAULT_SHAPE = {
    "em": {2: [256, 256], 3: [96, 96, 96]},
    "nuclei": {2: [256, 256], 3: [32, 160, 160]},
}


def _cells(
    rng: np.random.Generator, grid: np.ndarray, diameter: np.ndarray, stretch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cell instances (uint64, 0 on membranes), the membranes, and the number of cells.

    Cells are warped Voronoi regions of random seeds, round in world units.
    """
    shape = grid.shape[1:]
    dims = len(shape)
    n_cells = max(2, int(np.prod(shape) / np.prod(diameter) * 1.5))
    seeds = rng.uniform(0, 1, (n_cells, dims)) * np.asarray(shape)
    # Smooth random displacements make the Voronoi cells wavy rather than convex.
    warp = np.stack(
        [ndimage.gaussian_filter(rng.normal(size=shape), sigma=list(diameter / 3)) for _ in shape]
    )
    warp *= (diameter / 2 / (np.abs(warp).max() + 1e-9)).reshape((dims,) + (1,) * dims)
    points = (grid + warp.astype(np.float32)).reshape(dims, -1).T
    # Nearest seed in world units (finest-voxel units): Voronoi cells round in nm.
    _, nearest = cKDTree(seeds * stretch).query(points * stretch, workers=-1)
    labels = (nearest.reshape(shape) + 1).astype(np.uint64)
    membrane = find_boundaries(labels, mode="thick")
    labels[membrane] = 0
    return labels, membrane, n_cells


def _organelles(
    rng: np.random.Generator,
    grid: np.ndarray,
    labels: np.ndarray,
    n_cells: int,
    cell_diameter: float,
    stretch: np.ndarray,
) -> np.ndarray:
    """Ellipsoidal blob instances (uint64) inside cells, one per two cells."""
    shape = labels.shape
    dims = len(shape)
    organelles = np.zeros(shape, np.uint64)
    n_blobs = max(1, n_cells // 2)
    centres = rng.uniform(0, 1, (n_blobs, dims)) * np.asarray(shape)
    radii = rng.uniform(cell_diameter / 10, cell_diameter / 5, (n_blobs, dims)) / stretch
    for i, (c, r) in enumerate(zip(centres, radii, strict=True), start=1):
        lo = np.maximum(np.floor(c - r).astype(int), 0)
        hi = np.minimum(np.ceil(c + r).astype(int) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        local = grid[(slice(None), *box)]
        inside = sum(((local[d] - c[d]) / r[d]) ** 2 for d in range(dims)) <= 1
        inside &= labels[box] > 0
        organelles[box][inside] = i
    return organelles


def _em_raw(
    rng: np.random.Generator,
    labels: np.ndarray,
    membrane: np.ndarray,
    organelles: np.ndarray,
    n_cells: int,
) -> np.ndarray:
    """The uint8 EM-like image: a tone per cell, dark organelles, bright membranes, blur, noise."""
    shape = labels.shape
    cell_tone = rng.uniform(0.45, 0.65, n_cells + 1)
    raw = cell_tone[labels.astype(np.int64)]
    raw += 0.06 * ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.5)
    raw[organelles > 0] -= 0.25
    raw[membrane] = 0.9
    raw = ndimage.gaussian_filter(raw, sigma=1.0)
    raw += rng.normal(scale=0.04, size=shape)
    return np.clip(raw * 255, 0, 255).astype(np.uint8)


def generate_volume(
    shape: Sequence[int],
    seed: int,
    cell_diameter: float = 22.0,
    voxel_size: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Generate one EM-like volume (2D or 3D) in memory.

    Args:
        shape: voxels per axis.
        seed: random seed; the same seed gives the same volume.
        cell_diameter: typical cell diameter in voxels of the finest axis.
        voxel_size: nm per axis (None: isotropic). Cells are round in world units, so
            along a coarser axis they span proportionally fewer voxels (40x4x4 nm
            serial sections: a tenth as many along z); membranes, blur and noise stay
            a voxel or two along every axis, as in sections imaged at that resolution.

    Returns:
        `raw` (uint8), `labels` and `organelles` (uint64), `mask` (uint8).

    """
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    vs = np.ones(dims) if voxel_size is None else np.asarray(voxel_size, float)
    # Voxels per finest-axis voxel along each axis (1 where isotropic, so the isotropic
    # volume is the same as before this argument existed).
    stretch = vs / vs.min()
    diameter = cell_diameter / stretch  # the cell diameter in each axis's own voxels
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    labels, membrane, n_cells = _cells(rng, grid, diameter, stretch)
    organelles = _organelles(rng, grid, labels, n_cells, cell_diameter, stretch)
    raw = _em_raw(rng, labels, membrane, organelles, n_cells)

    mask = np.ones(shape, np.uint8)
    unannotated = max(1, shape[-1] // 8)
    mask[..., -unannotated:] = 0
    labels[mask == 0] = 0
    organelles[mask == 0] = 0
    return {"raw": raw, "labels": labels, "organelles": organelles, "mask": mask}


def write_synthetic(
    path: str | Path,
    dims: int = 3,
    shape: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    seed: int = 0,
    chunk: int = 32,
    kind: str = "em",
    cell_diameter: float | None = None,
    test: bool = False,
) -> Path:
    """Write a train and a validate volume to a new zarr v3 container at `path`.

    The container is built under a temporary name and renamed into place, so a
    reader never sees a half-written container and concurrent writers do not clash.
    `kind` picks the generator: `em` (EM-like cells) or `nuclei` (fluorescence nuclei).
    `cell_diameter` (nm, `em` only) sets the typical cell size in world units (default:
    22 voxels of the finest axis). `test` adds a held-out `test/` volume (its own seed)
    that neither training nor validation reads, for scoring a finished model.
    """
    params = _params(dims, shape, voxel_size, offset, seed, chunk, kind, cell_diameter, test)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        root.attrs[PARAMS_KEY] = {**params, "format": FORMAT}
        images = []
        for split, split_seed in _splits(params):
            volume = _generate(params, split_seed)
            _write_multiscale(tmp, dataset_path(split, "raw"), volume.pop("raw"), params)
            images.append(dataset_path(split, "raw"))
            for name, data in volume.items():  # label images of raw, written after it
                _write_multiscale(tmp, dataset_path(split, name), data, params)
        add_to_collection(tmp, *images)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.exists():
                raise
            log.info("%s was written concurrently by another process; keeping that one", path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def ensure_synthetic(path: str | Path, **kwargs: Any) -> Path:
    """Create the synthetic container at `path` unless one with the same parameters exists.

    The parameters (the kind included) are stored on the container, so asking for
    different ones regenerates it instead of silently reusing stale data.
    """
    path = Path(path)
    wanted = _params(**kwargs)
    if path.exists():
        try:
            have = zarr.open_group(str(path), mode="r").attrs.get(PARAMS_KEY)
        except Exception:  # an unreadable leftover is replaced below
            have = None
        if have == {**wanted, "format": FORMAT}:
            return path
        log.warning("regenerating %s: it was made with %s, %s is asked for", path, have, wanted)
        shutil.rmtree(path)
    log.info("generating synthetic data at %s", path)
    return write_synthetic(path, **wanted)


def _splits(params: dict[str, Any]) -> list[tuple[str, int]]:
    """The container's volumes and their seeds: train, validate and, if asked, test."""
    seed = params["seed"]
    splits = [("train", seed), ("validate", seed + 1000)]
    return splits + [("test", seed + 2000)] if params.get("test") else splits


def _params(
    dims: int = 3,
    shape: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    seed: int = 0,
    chunk: int = 32,
    kind: str = "em",
    cell_diameter: float | None = None,
    test: bool = False,
) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"synthetic data: kind must be one of {KINDS}, got {kind!r}")
    if dims not in (2, 3):
        raise ValueError(f"synthetic data: dims must be 2 or 3, got {dims}")
    shape = list(shape) if shape is not None else DEFAULT_SHAPE[kind][dims]
    if voxel_size is None:
        voxel_size = [8.0] * dims if kind == "em" else DEFAULT_VOXEL_SIZE[dims]
    voxel_size = list(voxel_size)
    offset = list(offset) if offset is not None else [0.0] * dims
    for key, value in (("shape", shape), ("voxel_size", voxel_size), ("offset", offset)):
        if len(value) != dims:
            raise ValueError(
                f"synthetic data: {key} {value} must have {dims} entries (dims={dims})"
            )
    params: dict[str, Any] = {
        "kind": kind,
        "dims": int(dims),
        "shape": [int(s) for s in shape],
        "voxel_size": [float(v) for v in voxel_size],
        "offset": [float(o) for o in offset],
        "seed": int(seed),
        "chunk": int(chunk),
    }
    # Stored only when given, so containers made before these options existed still match.
    if cell_diameter is not None:
        if kind != "em" or cell_diameter <= 0:
            raise ValueError(
                f"synthetic data: cell_diameter {cell_diameter} (nm) is for kind em and > 0"
            )
        params["cell_diameter"] = float(cell_diameter)
    if test:
        params["test"] = True
    return params


def _generate(params: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """One volume of the container's kind; nuclei need the voxel size for physical sizes."""
    if params["kind"] == "nuclei":
        return generate_nuclei(params["shape"], seed, params["voxel_size"])
    if "cell_diameter" not in params:
        return generate_volume(params["shape"], seed, voxel_size=params["voxel_size"])
    finest = min(params["voxel_size"])
    return generate_volume(
        params["shape"], seed, params["cell_diameter"] / finest, params["voxel_size"]
    )


def _write_multiscale(container: Path, path: str, data: np.ndarray, params: dict[str, Any]) -> None:
    """Write `data` as an OME-Zarr image with s0 and a 2x-downsampled s1.

    Raw is averaged; the annotations (instances, mask) are picked (every other
    voxel) and written as label images in raw's `labels/` group (their source),
    so viewers show them as labels over it.
    """
    name = "raw" if path.endswith("/raw") else path.rsplit("/", 1)[-1]
    trimmed = data[tuple(slice(0, s - s % 2) for s in data.shape)]
    if name == "raw":
        coarse = (
            trimmed.reshape([d for s in trimmed.shape for d in (s // 2, 2)])
            .mean(axis=tuple(range(1, 2 * data.ndim, 2)))
            .astype(data.dtype)
        )
    else:
        coarse = data[(slice(None, None, 2),) * data.ndim]
    scaled = (data, coarse)
    arrays = create_image(
        container,
        path,
        pyramid(params["voxel_size"], params["offset"], (1, 2)),
        [a.shape for a in scaled],
        data.dtype,
        (params["chunk"],) * data.ndim,
        label=name != "raw",
        method="mean" if name == "raw" else "stride",
        dense=name == "raw",  # raw holds every chunk, so a lost one is found
    )
    for array, values in zip(arrays, scaled, strict=True):
        array[...] = values
