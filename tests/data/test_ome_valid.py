"""Every container we write is valid OME-Zarr 0.5 (checked with ome-zarr-models).

Synthetic EM and nuclei data, `dacapo-predict` output, validation.zarr, and
post-processed labels written as label images of their prediction (as
`dacapo-apply` writes them; its own output is checked in tests/test_apply.py).
Levels follow the pixel-centre convention; the container root lists its images
the way napari-ome-zarr reads them.
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.base import BaseGroup
from ome_zarr_models.exceptions import ValidationWarning
from ome_zarr_models.v05 import BioFormats2Raw, Image, ImageLabel
from omegaconf import DictConfig

from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.ome import parse_multiscale
from dacapo_hydra.data.output import open_output
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.tools.convert import convert
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.inference.labels import post_process_blockwise
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.inference.predict import predict
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.tasks.inner_distance import InnerDistanceTask
from dacapo_hydra.training.build import build
from dacapo_hydra.training.validation import Validator


def assert_valid_ome_zarr(container: str | Path) -> dict[str, BaseGroup]:
    """Validate a whole container with ome-zarr-models; return its images by path.

    The root must be an OME-Zarr 0.5 collection (`bioformats2raw.layout`) whose
    `OME` group lists the images in `series`, in the order of the `Image` elements
    of `OME/METADATA.ome.xml` with IDs `Image:<path>` (how napari-ome-zarr finds
    them). Each image validates as an Image (with its `labels`, if any) or a label
    image, and every array carries dimension names. Any ome-zarr-models warning
    fails the check.
    """
    root = zarr.open_group(str(container), mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValidationWarning)
        BioFormats2Raw.from_zarr(root)
        meta = root["OME"].attrs.asdict()["ome"]
        assert meta["version"] == "0.5"
        series = meta["series"]
        assert series and all(isinstance(s, str) for s in series)
        xml = ET.parse(Path(container) / "OME" / "METADATA.ome.xml").getroot()
        ids = [e.attrib["ID"] for e in xml if e.tag.endswith("Image")]
        assert ids == [f"Image:{s}" for s in series]
        images = {path: open_ome_zarr(root[path], version="0.5") for path in series}
    for path, model in images.items():
        assert isinstance(model, Image | ImageLabel), path
        for level in model.attributes.ome.multiscales[0].datasets:
            names = root[f"{path}/{level.path}"].metadata.dimension_names
            assert names == tuple(a.name for a in model.attributes.ome.multiscales[0].axes)
    return images


def axes(group: zarr.Group) -> list[dict[str, str]]:
    return group.attrs["ome"]["multiscales"][0]["axes"]


@pytest.mark.parametrize(
    ("kind", "dims", "shape"), [("em", 3, [16, 24, 20]), ("nuclei", 2, [40, 48])]
)
def test_synthetic_containers_are_valid(
    tmp_path: Path, kind: str, dims: int, shape: list[int]
) -> None:
    path = write_synthetic(tmp_path / "s.zarr", dims=dims, shape=shape, kind=kind)
    images = assert_valid_ome_zarr(path)
    names = ["labels", "organelles", "mask"] if kind == "em" else ["labels", "mask"]
    # The annotations are found through their image, not listed as images of their own.
    assert list(images) == ["train/raw", "validate/raw"]
    root = zarr.open_group(str(path), mode="r")
    spatial = ["z", "y", "x"][-dims:]
    for path_, image in images.items():
        assert type(image) is Image and image.labels is not None
        assert image.labels.label_paths == names
        for name in names:
            label = image.labels.get_image_labels_group(name)
            assert type(label) is ImageLabel
            group = root[f"{path_}/labels/{name}"]
            assert group.attrs["ome"]["image-label"]["source"] == {"image": "../../"}
            assert [a["name"] for a in axes(group)] == spatial
        assert [a["name"] for a in axes(root[path_])] == spatial
        assert {a["unit"] for a in axes(root[path_])} == {"nanometer"}


def test_downsampled_level_translation_is_pixel_centred(tmp_path: Path) -> None:
    path = write_synthetic(
        tmp_path / "s.zarr",
        dims=3,
        shape=[8, 16, 16],
        voxel_size=[40, 8, 4],
        offset=[400, 80, 16],
    )
    datasets = zarr.open_group(str(path), mode="r")["train/raw"].attrs["ome"]["multiscales"][0][
        "datasets"
    ]
    s0, s1 = (d["coordinateTransformations"] for d in datasets)
    assert s0 == [
        {"type": "scale", "scale": [40.0, 8.0, 4.0]},
        {"type": "translation", "translation": [400.0, 80.0, 16.0]},
    ]
    # Factor 2: s0's translation + (2 - 1) / 2 of an s0 voxel, in nm.
    assert s1 == [
        {"type": "scale", "scale": [80.0, 16.0, 8.0]},
        {"type": "translation", "translation": [420.0, 84.0, 18.0]},
    ]
    # Read back, both levels cover the same box from the same offset.
    fine = ZarrArray.open(path, "train/raw")
    coarse = ZarrArray.open(path, "train/raw", scale_voxel_size=[80, 16, 8])
    assert fine.offset == coarse.offset == (400.0, 80.0, 16.0)
    assert coarse.roi == fine.roi == Roi((400.0, 80.0, 16.0), (320.0, 128.0, 64.0))
    assert ZarrArray.open(path, "train/raw/s1").offset == (400.0, 80.0, 16.0)


def test_files_whose_levels_share_one_translation_read_as_before(tmp_path: Path) -> None:
    """Older files (ours before pixel centres, corner-convention writers) stay readable."""
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    group = root.create_group("raw")
    group.create_array("s0", shape=(8, 8), chunks=(8, 8), dtype="uint8")
    group.create_array("s1", shape=(4, 4), chunks=(4, 4), dtype="uint8")
    entry = {
        "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "yx"],
        "datasets": [
            {
                "path": f"s{k}",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [4.0 * 2**k] * 2},
                    {"type": "translation", "translation": [8.0, 12.0]},
                ],
            }
            for k in range(2)
        ],
    }
    group.attrs["ome"] = {"version": "0.5", "multiscales": [entry]}
    coarse = ZarrArray.open(tmp_path / "old.zarr", "raw", scale_voxel_size=[8, 8])
    assert coarse.offset == (8.0, 12.0) and coarse.spatial_shape == (4, 4)
    parsed = parse_multiscale(group.attrs.asdict(), "raw")
    assert parsed is not None and [lv.offset for lv in parsed.levels] == [(8.0, 12.0)] * 2


def test_converted_tiff_is_valid(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((6, 8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "gt.tif", np.ones((6, 8, 8), np.uint32))
    out = tmp_path / "c.zarr"
    convert(tmp_path / "raw.tif", out, "raw", [40, 8, 8], levels=2, chunk=4)
    convert(tmp_path / "gt.tif", out, "gt", [40, 8, 8], levels=2, chunk=4, labels=True)
    images = assert_valid_ome_zarr(out)
    # The labels are a label image of their image, found through it.
    assert list(images) == ["raw"] and type(images["raw"]) is Image
    assert images["raw"].labels is not None and images["raw"].labels.label_paths == ["gt"]
    assert type(images["raw"].labels.get_image_labels_group("gt")) is ImageLabel


@pytest.fixture
def built(compose_tiny: Callable[..., DictConfig]) -> tuple[DictConfig, object]:
    cfg = compose_tiny(datasplit="synthetic_2d")
    return cfg, build(cfg)


def test_predict_and_validation_outputs_are_valid(
    built: tuple[DictConfig, object], tmp_path: Path
) -> None:
    cfg, b = built
    module = b.module.model.eval()
    container = Path(cfg.datasplit.synthetic.container)
    out = tmp_path / "p.zarr"
    predict(
        module, container, "validate/raw", out, "prediction", execution=Execution(progress=False)
    )
    images = assert_valid_ome_zarr(out)
    assert list(images) == ["prediction"] and type(images["prediction"]) is Image
    prediction = zarr.open_group(str(out), mode="r")["prediction"]
    assert [a["name"] for a in axes(prediction)] == ["c", "y", "x"]
    assert axes(prediction)[0] == {"name": "c", "type": "channel"}
    assert prediction["s0"].metadata.dimension_names == ("c", "y", "x")

    validation = tmp_path / "validation.zarr"
    validator = Validator(b.split, b.task, validation)
    dataset = b.split.validate[0]
    validator.predict(module, dataset)
    validator.predict(module, dataset)  # rewritten, listed once
    images = assert_valid_ome_zarr(validation)
    assert list(images) == [f"{dataset.name}/prediction"]


VOXEL = (8.0, 8.0, 8.0)
SHAPE = (12, 24, 24)


@pytest.fixture
def prediction(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An inner-distance prediction of a few objects in `out.zarr:prediction`."""
    gt = np.zeros(SHAPE, np.uint64)
    gt[2:10, 2:10, 2:10] = 1
    gt[2:10, 12:22, 4:20] = 2
    task = InnerDistanceTask(3, VOXEL)
    path = tmp_path / "out.zarr"
    roi = Roi((80.0, 160.0, 240.0), tuple(s * v for s, v in zip(SHAPE, VOXEL, strict=True)))
    values = task.scale(task.distances(gt)).astype(np.float32)
    open_output(path, "prediction", roi, VOXEL, 1, "float32", (12, 12, 12))[...] = values
    return path, gt


def test_labels_are_label_images_of_their_prediction(
    prediction: tuple[Path, np.ndarray],
) -> None:
    path, gt = prediction
    post_process_blockwise(
        InnerDistanceTask(3, VOXEL),
        {"seed_distance": 16.0},
        path,
        "prediction",
        path,
        "prediction/labels/labels",
        execution=Execution(progress=False),
    )
    post_process_blockwise(
        DistanceTask(3, VOXEL),
        {"threshold": 0.0},
        path,
        "prediction",
        path,
        "prediction/labels/mask",
        execution=Execution(progress=False),
    )
    images = assert_valid_ome_zarr(path)
    # Labels are found through their image, not listed as images of their own.
    assert list(images) == ["prediction"]
    image = images["prediction"]
    assert isinstance(image, Image) and image.labels is not None
    assert image.labels.label_paths == ["labels", "mask"]
    root = zarr.open_group(str(path), mode="r")
    assert root["prediction/labels"].attrs["ome"] == {
        "version": "0.5",
        "labels": ["labels", "mask"],
    }
    for name, dtype in (("labels", np.uint64), ("mask", np.uint8)):
        label = image.labels.get_image_labels_group(name)
        assert label.attributes.ome.image_label is not None
        group = root[f"prediction/labels/{name}"]
        assert group.attrs["ome"]["image-label"] == {
            "version": "0.5",
            "source": {"image": "../../"},
        }
        assert group["s0"].dtype == dtype
        assert group["s0"].metadata.dimension_names == ("c", "z", "y", "x")
        # Same place in the world as the prediction.
        assert (
            ZarrArray.open(path, f"prediction/labels/{name}").roi
            == ZarrArray.open(path, "prediction").roi
        )
    labels = root["prediction/labels/labels/s0"][0]
    assert len(np.unique(labels[gt == 1])) == 1 and labels[gt == 1][0] != 0
    np.testing.assert_array_equal(root["prediction/labels/mask/s0"][0], gt != 0)
    with pytest.raises(KeyError, match="prediction/labels/labels"):
        ZarrArray.open(path, "nothing")


def test_collection_drops_images_deleted_since(tmp_path: Path) -> None:
    path = tmp_path / "c.zarr"
    roi = Roi((0.0, 0.0), (32.0, 32.0))
    for name in ("a", "b"):
        open_output(path, name, roi, (4.0, 4.0), None, "float32", (8, 8))
    del zarr.open_group(str(path))["a"]
    open_output(path, "c", roi, (4.0, 4.0), None, "float32", (8, 8))
    assert list(assert_valid_ome_zarr(path)) == ["b", "c"]
    assert json.loads((path / "OME" / "zarr.json").read_text())["attributes"]["ome"] == {
        "version": "0.5",
        "series": ["b", "c"],
    }
