"""One grammar for every command: --version, examples, --input/--output, quiet, one-line errors.

And the data tools' outputs as a viewer reads them: labels in their image's `labels/`
group, valid OME-Zarr 0.5 (ome-zarr-models).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr_models.v05 import Image, ImageLabel

from dacapo_hydra import __version__
from dacapo_hydra.cli import (
    apply_main,
    convert_main,
    datasplit_main,
    export_main,
    plan_main,
    predict_main,
    sync_main,
    synthetic_main,
    validate_main,
)
from tests.data.test_ome_valid import assert_valid_ome_zarr

COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "dacapo-synthetic": synthetic_main,
    "dacapo-convert": convert_main,
    "dacapo-datasplit": datasplit_main,
    "dacapo-predict": predict_main,
    "dacapo-apply": apply_main,
    "dacapo-validate": validate_main,
    "dacapo-export": export_main,
    "dacapo-plan": plan_main,
    "dacapo-sync": sync_main,
}
UNWRITABLE = "/sys/dacapo-out"  # refused even to root


def run(command: Callable[[list[str]], None], argv: list[str]) -> int:
    """The exit status of a command run in this process (0 when it returns)."""
    try:
        command(argv)
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_answers_version_and_shows_examples(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(COMMANDS[name], ["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"{name} {__version__} (dacapo-hydra)"
    assert run(COMMANDS[name], ["--help"]) == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"  {name} " in text.split("examples:")[1]
    assert "-v, --verbose" in text
    # validate writes nothing; plan writes into the config folder (--config-dir, as train);
    # sync sends a run folder's queue to MLflow
    assert ("--output" in text) is (name not in ("dacapo-validate", "dacapo-plan", "dacapo-sync"))


def tiff(tmp_path: Path, name: str, data: np.ndarray) -> str:
    tifffile.imwrite(tmp_path / name, data)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("dacapo-synthetic", ["--dims", "2", "--shape", "16", "16"]),
        ("dacapo-convert", ["--input", "{tiff}", "--voxel-size", "8", "8"]),
        ("dacapo-datasplit", ["--input", "{csv}", "--no-check"]),
        ("dacapo-export", ["--checkpoint", "missing.ckpt"]),
    ],
)
def test_an_unwritable_output_is_one_line(
    name: str, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "split.csv"
    csv.write_text("train,a.zarr,raw,a.zarr,labels\n")
    image = tiff(tmp_path, "img.tif", np.zeros((8, 8), np.uint8))
    argv = [a.format(tiff=image, csv=csv) for a in argv]
    assert run(COMMANDS[name], [*argv, "--output", f"{UNWRITABLE}/out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"{name}: error: --output {UNWRITABLE}/out: cannot write into /sys")


def test_synthetic_labels_are_paired_with_their_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.zarr"
    assert run(synthetic_main, ["--output", str(out), "--dims", "2", "--shape", "32", "32"]) == 0
    assert '"path"' in capsys.readouterr().out
    images = assert_valid_ome_zarr(out)
    assert list(images) == ["train/raw", "validate/raw"]
    root = zarr.open_group(str(out), mode="r")
    for path, image in images.items():
        assert isinstance(image, Image) and image.labels is not None
        assert image.labels.label_paths == ["labels", "organelles", "mask"]
        for name in image.labels.label_paths:
            assert isinstance(image.labels.get_image_labels_group(name), ImageLabel)
            label = root[f"{path}/labels/{name}"].attrs["ome"]["image-label"]
            assert label["source"] == {"image": "../../"}
            # The label image covers its image, level for level.
            for level in ("s0", "s1"):
                assert root[f"{path}/labels/{name}/{level}"].shape == root[f"{path}/{level}"].shape
    cells = root["train/raw/labels/labels/s0"][...]
    assert cells.dtype == np.uint64 and len(np.unique(cells)) > 2


def test_converted_labels_join_their_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    raw = tiff(tmp_path, "raw.tif", rng.integers(0, 255, (6, 16, 16), dtype=np.uint8))
    cells = tiff(tmp_path, "cells.tif", rng.integers(0, 4, (6, 16, 16), dtype=np.uint32))
    out = str(tmp_path / "data.zarr")
    common = ["--output", out, "--voxel-size", "40", "8", "8", "--levels", "2", "--chunk", "8"]
    # Labels before their image: refused in one line, nothing written.
    assert run(convert_main, ["--input", cells, "--labels", *common]) == 2
    assert "labels belong to an image" in capsys.readouterr().err
    assert not Path(out).exists()
    assert run(convert_main, ["--input", raw, *common]) == 0
    assert run(convert_main, ["--input", cells, "--labels", *common]) == 0
    assert run(convert_main, ["--input", cells, "--labels", "--dataset", "more", *common]) == 0
    assert '"dataset": "raw/labels/more"' in capsys.readouterr().out
    images = assert_valid_ome_zarr(out)
    assert list(images) == ["raw"]
    image = images["raw"]
    assert isinstance(image, Image) and image.labels is not None
    assert image.labels.label_paths == ["labels", "more"]
    label = zarr.open_group(out, mode="r")["raw/labels/labels"]
    assert label.attrs["ome"]["image-label"]["source"] == {"image": "../../"}
    np.testing.assert_array_equal(label["s0"][...], tifffile.imread(cells))
    # Wrong image, float labels: one line each.
    assert run(convert_main, ["--input", cells, "--labels", "--image", "nope", *common]) == 2
    assert "--image nope: no such image" in capsys.readouterr().err
    floats = tiff(tmp_path, "f.tif", np.zeros((6, 16, 16), np.float32))
    assert run(convert_main, ["--input", floats, "--labels", "--dataset", "f", *common]) == 2
    assert "labels are integers" in capsys.readouterr().err


def test_a_stray_section_is_named_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "sections"
    folder.mkdir()
    for z in range(4):
        tiff(folder, f"s{z}.tif", np.zeros((16, 16) if z != 2 else (16, 15), np.uint8))
    out = tmp_path / "data.zarr"
    argv = ["--input", str(folder), "--output", str(out), "--voxel-size", "40", "8", "8"]
    assert run(convert_main, [*argv, "--chunk", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s2.tif: a uint8 section of shape (16, 15)" in err
    assert not out.exists()


@pytest.mark.slow
def test_run_id_commands_are_quiet_by_default(run_3d: object, tmp_path: Path) -> None:
    """No Alembic INFO lines nor download bars unless -v."""
    uri = f"sqlite:///{Path(run_3d.checkpoint).parents[3] / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DASK_"))}
    base = [str(Path(sys.executable).with_name("dacapo-export")), "--run-id", run_3d.run_id]
    base += ["--tracking-uri", uri]

    def export(*extra: str) -> subprocess.CompletedProcess[str]:
        folder = tmp_path / f"out{len(extra)}"
        return subprocess.run(
            [*base, "--output", str(folder), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    quiet = export()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.strip().startswith("dacapo-export: wrote")
    assert "INFO" not in quiet.stderr and "Downloading artifacts" not in quiet.stderr
    loud = export("-v")
    assert loud.returncode == 0 and "INFO" in loud.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(
    trained_2d: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dacapo_hydra.data.tools.synthetic import write_synthetic

    volume = write_synthetic(tmp_path / "v.zarr", dims=2, shape=[64, 64], voxel_size=[4, 4])
    out = tmp_path / "out.zarr"
    common = ["--checkpoint", trained_2d, "--input", str(volume), "validate/raw"]
    common += ["--output", str(out), "--dry-run"]
    assert run(predict_main, common) == 0
    text = capsys.readouterr().out
    assert f"dry run: output {out}/prediction/s0: shape (1, 64, 64), float32" in text
    assert "blocks: " in text and "estimated time: about" in text
    assert run(apply_main, [*common, "--params", "threshold=0.0"]) == 0
    text = capsys.readouterr().out
    assert "dry run: then labels" in text and "prediction/labels/mask/s0" in text
    assert not out.exists()


def test_validate_names_the_run_not_a_temporary_file(
    run_3d: object, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{Path(run_3d.checkpoint).parents[3] / 'mlflow.db'}"
    assert run(validate_main, ["--run-id", run_3d.run_id, "--tracking-uri", uri]) == 0
    first, *rows = capsys.readouterr().out.splitlines()
    assert first == f"run {run_3d.run_id}, best checkpoint"
    assert rows and not any("/tmp" in line for line in [first, *rows])
