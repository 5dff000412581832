"""TIFF stacks to OME-zarr (`dacapo-convert`): what many labs hold, as the datasplit reads it.

Reads a multi-page TIFF, or a folder of single-section TIFFs (sorted by name, one
z section each), and writes a zarr v3 container holding an OME-Zarr 0.5 image:
level `s0` at the given voxel size and offset (nm), and optional 2x-downsampled
levels (mean for images, every other voxel for labels). An image joins the
container's collection; labels (integer annotations) become a label image in their
image's `labels/` group (`<image>/labels/<name>`, listed there, `image-label.source`
pointing back at the image), so viewers pair them. Sections are read and written a
slab at a time, so a stack larger than memory converts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile
import zarr
from skimage.measure import block_reduce

from dacapo_hydra.data.ome import LABELS_GROUP, is_image, label_parent, ome_attrs, pyramid
from dacapo_hydra.data.output import add_to_collection, create_image


class TiffStack:
    """A TIFF stack read section by section: a multi-page file or a folder of files.

    Args:
        path: the TIFF file or the folder of TIFF files.

    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"TIFF input {str(self.path)!r} does not exist")
        if self.path.is_dir():
            self.files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in (".tif", ".tiff")
            )
            if not self.files:
                raise FileNotFoundError(f"folder {str(self.path)!r} holds no .tif/.tiff files")
            first = _section(self.files[0])
            for file in self.files[1:]:  # headers only: a stray section is named up front
                if (found := _section(file)) != first:
                    raise ValueError(
                        f"{file}: a {found[1]} section of shape {found[0]}; "
                        f"{self.files[0].name} is {first[1]} of shape {first[0]}"
                    )
            self.shape = (len(self.files), *first[0])
            self.dtype = first[1]
        else:
            self.files = []
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                self.shape = tuple(series.shape)
                self.dtype = series.dtype
        if len(self.shape) not in (2, 3):
            raise ValueError(
                f"{self.path}: expected a 2D image or a 3D stack (z, y, x), got shape {self.shape}"
            )

    def slabs(self, depth: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first z, sections) for consecutive slabs of `depth` sections."""
        if len(self.shape) == 2:
            yield 0, tifffile.imread(self.path)
            return
        for z in range(0, self.shape[0], depth):
            keys = range(z, min(z + depth, self.shape[0]))
            if self.files:
                data = np.stack([tifffile.imread(self.files[k]) for k in keys])
            else:
                data = tifffile.imread(self.path, key=list(keys))
                data = data.reshape(len(keys), *self.shape[1:])
            yield z, data


def convert(
    source: str | Path,
    container: str | Path,
    dataset: str,
    voxel_size: Sequence[float],
    offset: Sequence[float] | None = None,
    chunk: int = 64,
    levels: int = 1,
    labels: bool = False,
    image: str | None = None,
) -> zarr.Group:
    """Write the TIFF stack `source` as the multiscale group `dataset` of `container`.

    Args:
        source: the TIFF file or folder of section TIFFs.
        container: the zarr container (created if missing).
        dataset: the image's group; for labels, the label image's name.
        voxel_size: nm per axis.
        offset: nm per axis (default 0).
        chunk: chunk edge in voxels.
        levels: scale levels, each 2x coarser.
        labels: integer annotations: a label image of `image`, downsampled by picking.
        image: the image labels belong to (default: the container's only image).

    Returns:
        The multiscale group.

    Raises:
        FileNotFoundError: no such TIFF.
        ValueError: wrong voxel size or offset, the dataset exists, non-integer labels,
            or labels without their image.

    """
    stack = TiffStack(source)
    dims = len(stack.shape)
    vs, off = _placement(source, dims, voxel_size, offset)
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    dataset = _new_dataset(source, stack, container, dataset, labels, image)
    created = not Path(container).exists()
    shapes = [tuple(max(1, s // 2**level) for s in stack.shape) for level in range(levels)]
    arrays = create_image(
        container,
        dataset,
        pyramid(vs, off, [2**level for level in range(levels)]),
        shapes,
        stack.dtype,
        (chunk,) * dims,
        label=labels,
        method=("stride" if labels else "mean") if levels > 1 else None,
        dense=not labels,  # raw holds every chunk, so a lost one is found
    )
    try:
        _copy(stack, arrays, chunk, labels)
    except BaseException:  # a read error, a full disk, Ctrl-C: no half-written image stays
        _discard(container, dataset, created)
        raise
    return zarr.open_group(str(container), mode="r")[dataset]


def _placement(
    source: str | Path, dims: int, voxel_size: Sequence[float], offset: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    """Voxel size and offset (nm; offset 0 by default), one value per axis of the stack."""
    vs = [float(v) for v in voxel_size]
    off = [float(o) for o in (offset if offset is not None else [0.0] * dims)]
    if len(vs) != dims or len(off) != dims:
        raise ValueError(
            f"{source}: a {dims}D stack needs {dims} voxel_size and offset values, "
            f"got {vs} and {off}"
        )
    return vs, off


def _new_dataset(
    source: str | Path,
    stack: TiffStack,
    container: str | Path,
    dataset: str,
    labels: bool,
    image: str | None,
) -> str:
    """The group to write (labels: under their image's `labels/`), refused if it exists."""
    if labels:
        if np.dtype(stack.dtype).kind not in "biu":
            raise ValueError(f"--labels {source}: labels are integers, this stack is {stack.dtype}")
        dataset = f"{labelled_image(container, image)}/{LABELS_GROUP}/{dataset.strip('/')}"
    if Path(container).exists() and dataset in zarr.open_group(str(container), mode="r"):
        raise ValueError(f"{container}:{dataset} exists already; pick another dataset name")
    return dataset


def _copy(stack: TiffStack, arrays: list[zarr.Array], chunk: int, labels: bool) -> None:
    """Write the stack slab by slab into every level."""
    levels = len(arrays)
    depth = chunk * 2 ** (levels - 1)  # a slab covers whole chunks at every level
    for z, data in stack.slabs(depth):
        arrays[0][z : z + data.shape[0]] = data
        for level in range(1, levels):
            data = _downsample(data, labels)
            start = z // 2**level
            target = arrays[level]
            end = min(start + data.shape[0], target.shape[0])
            if end > start:
                inner = (slice(0, end - start), *(slice(0, n) for n in target.shape[1:]))
                target[start:end] = data[inner]


def _discard(container: str | Path, dataset: str, created: bool) -> None:
    """Remove a half-written image (and the container, if this conversion created it)."""
    if created:
        shutil.rmtree(container, ignore_errors=True)
        return
    shutil.rmtree(Path(container) / dataset, ignore_errors=True)
    root = zarr.open_group(str(container), mode="a")
    parent = label_parent(root, dataset)
    if parent is None:
        add_to_collection(container)  # drops images that no longer exist
        return
    group = root[f"{parent[0]}/{LABELS_GROUP}"]
    names = [n for n in ome_attrs(group.attrs.asdict()).get("labels", []) if n != parent[1]]
    group.attrs.update({"ome": {**ome_attrs(group.attrs.asdict()), "labels": names}})


def _section(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of a section TIFF, from its header."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return tuple(series.shape), np.dtype(series.dtype)


def _downsample(data: np.ndarray, labels: bool) -> np.ndarray:
    trimmed = data[tuple(slice(0, max(1, n - n % 2)) for n in data.shape)]
    if labels:
        return trimmed[(slice(None, None, 2),) * data.ndim]
    return block_reduce(trimmed, (2,) * data.ndim, np.mean).astype(data.dtype)


def labelled_image(container: str | Path, image: str | None) -> str:
    """The image labels of `container` belong to: `image`, checked, or the only image.

    Raises:
        ValueError: `image` is not an image of the container, or (not given) the
            container holds no image or several.

    """
    root = zarr.open_group(str(container), mode="r") if Path(container).exists() else None
    if image is not None:
        if root is None or not is_image(root, image.strip("/")):
            raise ValueError(
                f"--image {image}: no such image in {container}; convert the image first "
                "(dacapo-convert --input IMAGE.tif --output CONTAINER --dataset NAME)"
            )
        return image.strip("/")
    series = []
    if root is not None and "OME" in root:
        series = [str(s) for s in ome_attrs(root["OME"].attrs.asdict()).get("series", [])]
    images = [s for s in series if root is not None and is_image(root, s)]
    if len(images) != 1:
        found = f"it holds {', '.join(images)}" if images else "it holds no image yet"
        raise ValueError(
            f"labels belong to an image of {container}: name it with --image ({found})"
        )
    return images[0]
