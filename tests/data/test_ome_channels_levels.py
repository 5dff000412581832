"""Channel names of predictions and scale levels (`levels`) of predictions and labels.

Exact metadata: each task names its channels (OME-Zarr `omero.channels[].label`);
lower levels are 2x reductions (mean for predictions, most frequent id for labels)
whose translations follow the pixel-centre rule; the run's validation.zarr holds
the chosen parameter set's labels as a label image of each prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.common.omero import Omero
from ome_zarr_models.v05 import Image, ImageLabel
from omegaconf import DictConfig

from dacapo_hydra.data.ome import ScaleLevel, omero_attrs
from dacapo_hydra.data.output import create_image, open_output
from dacapo_hydra.data.pyramid import mode, write_levels
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.labels import post_process_blockwise
from dacapo_hydra.inference.options import Execution, PredictOptions
from dacapo_hydra.inference.predict import predict
from dacapo_hydra.tasks.affinities import AffinitiesTask
from dacapo_hydra.tasks.distance import DistanceTask
from dacapo_hydra.tasks.hot_distance import HotDistanceTask
from dacapo_hydra.tasks.inner_distance import InnerDistanceTask
from dacapo_hydra.tasks.one_hot import OneHotTask
from dacapo_hydra.training.build import build
from dacapo_hydra.training.validation import Validator
from tests.data.test_ome_valid import assert_valid_ome_zarr

VOXEL = (8.0, 8.0, 8.0)


def test_tasks_name_their_channels() -> None:
    affinities = AffinitiesTask(3, VOXEL, neighborhood=[[-1, 0, 0], [0, -3, 0]], lsds=True)
    assert affinities.channel_names[:3] == [
        "affinity [-1, 0, 0]",
        "affinity [0, -3, 0]",
        "lsd offset z",
    ]
    assert affinities.channel_names[-2:] == ["lsd correlation yx", "lsd mass"]
    assert len(affinities.channel_names) == affinities.num_channels == 12
    assert DistanceTask(3, VOXEL, channels=["cell", "nucleus"]).channel_names == [
        "distance cell",
        "distance nucleus",
    ]
    assert HotDistanceTask(3, VOXEL, channels=["cell"]).channel_names == [
        "mask cell",
        "distance cell",
    ]
    assert InnerDistanceTask(3, VOXEL).channel_names == ["inner distance foreground"]
    assert OneHotTask(3, VOXEL, classes=["bg", "mito", "er"]).channel_names == ["bg", "mito", "er"]
    assert DistanceTask(3, VOXEL).output_range == (-1.0, 1.0)
    assert affinities.output_range == (0.0, 1.0)


def test_omero_block_is_valid() -> None:
    block = omero_attrs(["affinity [-1, 0, 0]", "b", "c", "d"], (0, 255))
    Omero.model_validate(block)
    assert [c["color"] for c in block["channels"]] == ["FF0000", "00FF00", "0000FF", "FFFF00"]
    assert [c["active"] for c in block["channels"]] == [True, True, True, False]
    assert block["channels"][0]["window"] == {"min": 0.0, "max": 255.0, "start": 0.0, "end": 255.0}


def test_mode_picks_the_most_frequent_and_the_smallest_on_ties() -> None:
    values = np.array([[[7, 7], [0, 0]], [[5, 5], [5, 0]]], np.uint64)
    np.testing.assert_array_equal(mode(values, axis=(1, 2)), [0, 5])


def test_levels_of_an_image_and_its_labels(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    level = ScaleLevel("s0", VOXEL, (80.0, 0.0, 16.0))
    (image,) = create_image(
        path, "prediction", [level], [(1, 5, 4, 4)], "float32", (1, 2, 2, 2), channels=True
    )
    image[...] = np.arange(80, dtype=np.float32).reshape(1, 5, 4, 4)
    (labels,) = create_image(
        path, "prediction/labels/labels", [level], [(5, 4, 4)], "uint64", (2, 2, 2), label=True
    )
    ids = np.zeros((5, 4, 4), np.uint64)
    ids[:2, :2, :2] = 3
    ids[0, 0, 0] = 9  # one voxel of another id: the box's mode stays 3
    labels[...] = ids
    assert write_levels(path, "prediction", 3) == ["s0", "s1", "s2"]
    assert write_levels(path, "prediction/labels/labels", 3) == ["s0", "s1", "s2"]
    root = zarr.open_group(str(path), mode="r")
    ms = root["prediction"].attrs["ome"]["multiscales"][0]
    assert ms["type"] == "mean"
    assert [d["coordinateTransformations"] for d in ms["datasets"][1:]] == [
        [
            {"type": "scale", "scale": [1.0, 16.0, 16.0, 16.0]},
            {"type": "translation", "translation": [0.0, 84.0, 4.0, 20.0]},
        ],
        [
            {"type": "scale", "scale": [1.0, 32.0, 32.0, 32.0]},
            {"type": "translation", "translation": [0.0, 92.0, 12.0, 28.0]},
        ],
    ]
    # The odd fifth z section is dropped; each s1 voxel is its 2x2x2 box's mean.
    assert root["prediction/s1"].shape == (1, 2, 2, 2)
    assert root["prediction/s1"][0, 0, 0, 0] == np.mean([0, 1, 4, 5, 16, 17, 20, 21])
    assert root["prediction/s2"].shape == (1, 1, 1, 1)
    assert root["prediction/labels/labels"].attrs["ome"]["multiscales"][0]["type"] == "mode"
    s1 = root["prediction/labels/labels/s1"]
    assert s1.dtype == np.uint64 and s1[0, 0, 0] == 3 and s1[1, 1, 1] == 0
    Image.from_zarr(root["prediction"])
    ImageLabel.from_zarr(root["prediction/labels/labels"])
    # Fewer levels on a rerun: the extra ones go.
    write_levels(path, "prediction", 1)
    root = zarr.open_group(str(path), mode="r")
    assert "s1" not in root["prediction"]
    assert "type" not in root["prediction"].attrs["ome"]["multiscales"][0]


def test_post_processed_labels_get_levels(tmp_path: Path) -> None:
    path = tmp_path / "out.zarr"
    roi = Roi((0.0, 0.0, 0.0), tuple(16 * v for v in VOXEL))
    values = -np.ones((1, 16, 16, 16), np.float32)
    values[0, 4:12, 4:12, 4:12] = 1
    open_output(path, "prediction", roi, VOXEL, 1, "float32", (8, 8, 8))[...] = values
    write_levels(path, "prediction", 2)  # the labels get as many levels as their image
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
    assert list(images) == ["prediction"]
    s1 = zarr.open_group(str(path), mode="r")["prediction/labels/mask/s1"]
    expected = np.zeros((1, 8, 8, 8), np.uint8)
    expected[0, 2:6, 2:6, 2:6] = 1
    np.testing.assert_array_equal(s1[...], expected)


def test_levels_option_is_checked() -> None:
    assert PredictOptions(levels=3).levels == 3
    with pytest.raises(ValueError, match="levels 0"):
        PredictOptions(levels=0)


def test_prediction_and_validation_name_channels_and_pair_labels(
    compose_tiny: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_tiny(datasplit="synthetic_2d")
    b = build(cfg)
    module = b.module.model.eval()
    out = tmp_path / "p.zarr"
    predict(
        module,
        cfg.datasplit.synthetic.container,
        "validate/raw",
        out,
        "prediction",
        options=PredictOptions(levels=2),
        execution=Execution(progress=False),
    )
    assert_valid_ome_zarr(out)
    group = zarr.open_group(str(out), mode="r")["prediction"]
    omero = group.attrs["ome"]["omero"]
    Omero.model_validate(omero)
    assert [c["label"] for c in omero["channels"]] == module.task.channel_names
    assert omero["channels"][0]["window"]["start"] == module.task.output_range[0]
    assert [d["path"] for d in group.attrs["ome"]["multiscales"][0]["datasets"]] == ["s0", "s1"]

    validation = tmp_path / "validation.zarr"
    validator = Validator(b.split, b.task, validation)
    dataset = b.split.validate[0]
    validator.predict(module, dataset)
    params = b.task.parameter_grid()[0]
    kind = "labels" if b.task.instances else "mask"
    assert validator.write_labels(params) == [f"{dataset.name}/prediction/labels/{kind}"]
    images = assert_valid_ome_zarr(validation)
    image = images[f"{dataset.name}/prediction"]
    assert isinstance(image, Image) and image.labels is not None
    assert image.labels.label_paths == [kind]
    root = zarr.open_group(str(validation), mode="r")
    label = root[f"{dataset.name}/prediction/labels/{kind}"]
    assert label.attrs["ome"]["image-label"]["source"] == {"image": "../../"}
    assert label.attrs["dacapo"]["post_process"] == dict(params)
    assert [
        c["label"] for c in root[f"{dataset.name}/prediction"].attrs["ome"]["omero"]["channels"]
    ] == module.task.channel_names
