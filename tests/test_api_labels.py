"""The API's post_process writes where dacapo-apply does: a label image of the prediction."""

from __future__ import annotations

from pathlib import Path

import zarr
from ome_zarr_models.v05 import Image

from dacapo_hydra import Execution, load_model, post_process, predict
from dacapo_hydra.data.tools.synthetic import write_synthetic
from tests.data.test_ome_valid import assert_valid_ome_zarr


def test_post_process_labels_join_their_prediction(trained_2d: str, tmp_path: Path) -> None:
    volume = write_synthetic(tmp_path / "v.zarr", dims=2, shape=[48, 48], voxel_size=[4, 4])
    model = load_model(trained_2d)
    quiet = Execution(progress=False)
    out = tmp_path / "out.zarr"
    predict(model, volume, "validate/raw", out, execution=quiet)
    mask = post_process(model, out, "prediction", out, params={"threshold": 0.0}, execution=quiet)
    assert mask.dataset == "prediction/labels/mask"  # a semantic task: a mask
    labels = post_process(
        model,
        out,
        "prediction/s0",  # a level names its image
        out,
        params={"threshold": 0.0},
        connected_components=True,
        execution=quiet,
    )
    assert labels.dataset == "prediction/labels/labels"
    images = assert_valid_ome_zarr(out)
    assert list(images) == ["prediction"]
    image = images["prediction"]
    assert isinstance(image, Image) and image.labels is not None
    assert image.labels.label_paths == ["mask", "labels"]
    # Into another container the labels stand alone, named as the task's output.
    other = post_process(
        model, out, "prediction", tmp_path / "other.zarr", params={"threshold": 0.0}
    )
    assert other.dataset == "mask"
    assert "mask/s0" in zarr.open_group(str(tmp_path / "other.zarr"), mode="r")
