"""dacapo-datasplit: DaCapo's DataSplitGenerator CSV becomes a datasplit YAML that opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from omegaconf import OmegaConf

from dacapo_hydra.cli import datasplit_main as main
from dacapo_hydra.config.datasplit import DataSplitConfig
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.ome import ScaleLevel, multiscale_attrs


def _container(path: Path, classes: list[str]) -> Path:
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name in ["raw", *[f"crop1/{c}" for c in classes]]:
        group = root.require_group(name)
        for level, n in (("s0", 32), ("s1", 16)):
            data = (np.indices((n, n)).sum(0) % 3).astype(np.uint8)
            group.create_array(level, shape=(n, n), chunks=(8, 8), dtype="uint8")[...] = data
        group.attrs.update(
            multiscale_attrs(
                name,
                [
                    ScaleLevel("s0", (4.0, 4.0), (0.0, 0.0)),
                    ScaleLevel("s1", (8.0, 8.0), (0.0, 0.0)),
                ],
            )
        )
    return path


def test_dacapo_csv_becomes_a_datasplit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _container(tmp_path / "a.zarr", ["mito", "er"])
    b = _container(tmp_path / "b.zarr", ["mito"])  # er not annotated here
    csv = tmp_path / "split.csv"
    csv.write_text(
        f"train,{a},raw,{a},crop1/[mito&er]\n"
        f"train,{b},raw,{b},crop1/[mito&er]\n"
        f"val,{a},raw,{a},crop1/[mito]\n"
    )
    out = tmp_path / "mine.yaml"
    main(
        [
            "--input",
            str(csv),
            "--output",
            str(out),
            "--dims",
            "2",
            "--input-voxel-size",
            "8",
            "8",
            "--output-voxel-size",
            "8",
            "8",
        ]
    )
    assert "2 train, 1 validate" in capsys.readouterr().out
    text = out.read_text()
    assert "/schema/datasplit/datasplit@_here_" in text
    cfg = yaml.safe_load(text)
    assert cfg["train"][1]["gt"]["channels"]["er"] is None
    assert cfg["validate"][0]["gt"] == {"container": str(a), "dataset": "crop1/mito"}
    # The YAML passes the group's schema, as Hydra composes it.
    schema = OmegaConf.structured(DataSplitConfig)
    split = DataSplit.from_config(
        OmegaConf.merge(schema, {k: v for k, v in cfg.items() if k != "defaults"})
    )
    assert split.voxel_size == (8.0, 8.0)  # scale level s1 picked
    gt, mask = split.train[1].gt, split.train[1].mask
    assert gt.num_channels == 2 and mask is not None
    m = mask.read(mask.roi)
    assert m[0].all() and not m[1].any()  # missing class is unknown, not background
    assert split.validate[0].gt.num_channels is None


def test_bad_csv_rows_are_named(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("train,a.zarr,raw,a.zarr\n")
    with pytest.raises(SystemExit):
        main(["--input", str(csv)])
    csv.write_text("trian,a.zarr,raw,a.zarr,labels\n")
    from dacapo_hydra.data.tools.csv_split import read_rows

    with pytest.raises(ValueError, match=r"bad.csv:1: first field must be train or val"):
        read_rows(csv)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_rows(tmp_path / "missing.csv")
