"""Datasplits from config: bad input named early, layouts, specs, sampling settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from dacapo_hydra.data.datasplit import DataSplit


def _volume(
    path: Path,
    raw_vs: float = 8.0,
    gt_vs: float = 8.0,
    shape: int = 16,
    raw_dtype: str = "uint8",
    mask_shape: int | None = None,
) -> Path:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    gt_shape = int(shape * raw_vs / gt_vs)
    specs = {
        "raw": ((shape,) * 2, raw_dtype, raw_vs),
        "gt": ((gt_shape,) * 2, "uint64", gt_vs),
        "mask": ((mask_shape or gt_shape,) * 2, "uint8", gt_vs),
    }
    for name, (s, dtype, vs) in specs.items():
        array = root.create_array(name, shape=s, chunks=(8, 8), dtype=dtype)
        # Raw varies, so the default (percentile) normalisation has a range to measure.
        array[...] = np.indices(s).sum(0) % 50 + 1 if name == "raw" else 1
        array.attrs.update({"voxel_size": [vs, vs], "offset": [0.0, 0.0]})
    return path


def _cfg(path: Path, **dataset: Any) -> dict[str, Any]:
    entry = {
        "name": "d",
        "raw": {"container": str(path), "dataset": "raw"},
        "gt": {"container": str(path), "dataset": "gt"},
        "mask": {"container": str(path), "dataset": "mask"},
        **dataset,
    }
    return {"dims": 2, "train": [entry]}


def test_a_good_split_opens(tmp_path: Path) -> None:
    split = DataSplit.from_config(_cfg(_volume(tmp_path / "v.zarr")))
    assert split.voxel_size == (8.0, 8.0) and split.gt_voxel_size == (8.0, 8.0)
    assert split.in_channels == 1 and split.sampling.strategy == "uniform"


def test_finer_gt_is_accepted(tmp_path: Path) -> None:
    split = DataSplit.from_config(_cfg(_volume(tmp_path / "v.zarr", gt_vs=4.0)))
    assert split.gt_voxel_size == (4.0, 4.0)


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing path", FileNotFoundError, r"train\[0\].raw: zarr container '.*nowhere.zarr'"),
        ("missing key", KeyError, r"train\[0\].gt: dataset 'labels' not found in .*v.zarr"),
        ("voxel sizes", ValueError, r"raw voxel size \(8.0, 8.0\).*gt voxel size \(3.0, 3.0\)"),
        ("mask shape", ValueError, r"train\[0\].mask .* expected the gt's"),
        ("empty", ValueError, r"datasplit.train is empty"),
        ("strategy", ValueError, r"sampling.strategy must be one of"),
        ("points", ValueError, r"sample_points\[0\] \[900.0, 0.0\] is not a 2-D point inside"),
        ("spec type", ValueError, r"train\[0\].gt.type 'binarise' is not an array type"),
    ],
)
def test_bad_input_gets_one_clear_message(
    tmp_path: Path, case: str, error: type, message: str
) -> None:
    path = tmp_path / "v.zarr"
    if case == "missing path":
        cfg = _cfg(_volume(path))
        cfg["train"][0]["raw"]["container"] = str(tmp_path / "nowhere.zarr")
    elif case == "missing key":
        cfg = _cfg(_volume(path))
        cfg["train"][0]["gt"]["dataset"] = "labels"
    elif case == "voxel sizes":
        cfg = _cfg(_volume(path), mask=None)
        cfg["train"][0]["gt"]["voxel_size"] = [3.0, 3.0]
    elif case == "mask shape":
        cfg = _cfg(_volume(path, mask_shape=12))
    elif case == "empty":
        cfg = {"dims": 2, "train": []}
    elif case == "strategy":
        cfg = {**_cfg(_volume(path)), "sampling": {"strategy": "random"}}
    elif case == "points":
        cfg = _cfg(_volume(path), sample_points=[[900.0, 0.0]])
    else:
        cfg = _cfg(_volume(path))
        cfg["train"][0]["gt"] = {"type": "binarise", "source": cfg["train"][0]["gt"]}
    with pytest.raises(error, match=message):
        DataSplit.from_config(cfg)


def test_reject_needs_a_mask_and_points_need_points(tmp_path: Path) -> None:
    path = _volume(tmp_path / "v.zarr")
    with pytest.raises(ValueError, match="'reject' needs a mask"):
        DataSplit.from_config({**_cfg(path, mask=None), "sampling": {"strategy": "reject"}})
    with pytest.raises(ValueError, match="'points' needs sample_points"):
        DataSplit.from_config({**_cfg(path), "sampling": {"strategy": "points"}})


def test_convention_layout_finds_datasets(tmp_path: Path) -> None:
    root = tmp_path / "project"
    for group, names in (("train", ("a", "b")), ("test", ("c",))):
        (root / group).mkdir(parents=True)
        for name in names:
            path = _volume(root / group / f"{name}.zarr")
            (path / "gt").rename(path / "labels")  # the layout's name for gt
    split = DataSplit.from_config({"dims": 2, "layout": {"path": str(root)}})
    assert [d.name for d in split.train] == ["a", "b"]
    assert [d.name for d in split.validate] == ["c"]
    assert all(d.mask is not None for d in split.train)
    with pytest.raises(FileNotFoundError, match="the train group"):
        DataSplit.from_config({"dims": 2, "layout": {"path": str(root), "train_group": "nope"}})


def test_scale_levels_follow_the_run_voxel_sizes(cache_dir: Path) -> None:
    from dacapo_hydra.data.tools.synthetic import ensure_synthetic

    path = ensure_synthetic(cache_dir / "scales_2d.zarr", dims=2, shape=[64, 64])
    entry = {
        "name": "s",
        "raw": {"container": str(path), "dataset": "train/raw"},
        "gt": {"container": str(path), "dataset": "train/raw/labels/labels"},
    }
    split = DataSplit.from_config(
        {"dims": 2, "train": [entry], "input_voxel_size": [16, 16], "output_voxel_size": [8, 8]}
    )
    assert split.voxel_size == (16.0, 16.0) and split.gt_voxel_size == (8.0, 8.0)
    assert split.train[0].raw.spatial_shape == (32, 32)
