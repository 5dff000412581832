"""Export: the exported model gives the live model's output, without the training code."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dacapo_hydra.cli import export_main
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.export.apply_script import load, normalize, predict
from dacapo_hydra.export.model import export_model
from dacapo_hydra.model.load import load as load_trained
from dacapo_hydra.training.module import RunModule


@pytest.fixture(scope="module")
def trained(trained_2d: str) -> str:
    """A checkpoint of a tiny 2D distance run (4 iterations), shared by the session."""
    return trained_2d


def test_exported_model_matches_live(trained, tmp_path):
    exported = export_model(trained, tmp_path / "model")
    meta = json.loads((exported.folder / "model.json").read_text())
    assert meta == exported.metadata
    assert meta["input_shape"] == [84, 84] and meta["output_shape"] == [68, 68]
    assert meta["context"] == [8, 8] and meta["axes"] == ["b", "c", "y", "x"]
    assert meta["normalize"] == {
        "mode": "minmax",
        "lo": 0.0,
        "hi": 255.0,
        "min": 0.0,
        "max": 255.0,
        "measured": False,
    }
    assert meta["input_voxel_size"] == meta["output_voxel_size"] == [4.0, 4.0]
    assert OmegaConf.load(exported.folder / "config.yaml").architecture.input_shape == 44
    live = load_trained(trained)
    x = torch.rand(3, 1, 84, 84)
    with torch.no_grad():
        expected = live(x)
    program = torch.export.load(str(exported.folder / "model.pt2")).module()
    script = torch.jit.load(str(exported.folder / "model.torchscript.pt"))
    torch.testing.assert_close(program(x), expected)
    torch.testing.assert_close(script(x), expected)
    # The sample input is raw intensities: normalised, it gives the sample output.
    sample_raw = np.load(exported.folder / "sample_input.npy")
    assert sample_raw.max() > 1
    sample_in = torch.from_numpy(normalize(sample_raw, meta))
    sample_out = np.load(exported.folder / "sample_output.npy")
    with torch.no_grad():
        np.testing.assert_allclose(live(sample_in).numpy(), sample_out, atol=1e-5)
    # The exported apply.py holds the package's normalisation, written into it, not imported.
    source = (exported.folder / "apply.py").read_text()
    assert "import dacapo_hydra" not in source and "from dacapo_hydra" not in source
    assert source.count("def scale_linear(") == 1
    exported_normalize = runpy.run_path(str(exported.folder / "apply.py"))["normalize"]
    expected_input = Normalizer.from_dict(meta["normalize"])(sample_raw)
    np.testing.assert_array_equal(exported_normalize(sample_raw, meta), expected_input)


@pytest.mark.slow
def test_apply_predicts_blockwise_like_one_pass(trained, tmp_path):
    folder = export_model(trained, tmp_path / "model").folder
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(100, 70)).astype(np.uint8)
    out = predict(raw, folder)
    assert out.shape == (1, 100, 70)
    # Blocks of 68 tile a 136 x 136 output; the valid U-Net is translation equivariant,
    # so one pass over the whole padded array gives the same values.
    padded = np.pad(
        normalize(raw, {"normalize": {"lo": 0, "hi": 255}}), [(8, 44), (8, 74)], mode="reflect"
    )
    live = load_trained(trained)
    with torch.no_grad():
        whole = live(torch.from_numpy(padded)[None, None])[0].numpy()
    np.testing.assert_allclose(out, whole[:, :100, :70], atol=1e-5)

    # The copied script runs in an isolated interpreter, from the folder alone.
    np.save(tmp_path / "raw.npy", raw)
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(folder / "apply.py"),
            str(tmp_path / "raw.npy"),
            str(tmp_path / "out.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), out, atol=1e-6)


def test_super_resolution_export(compose_tiny, tmp_path):
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        overrides=["architecture.upsample_factors=[2]", "architecture.upsample=constant"],
    )
    meta = {"dims": 2, "in_channels": 1, "voxel_size": [8.0, 8.0], "gt_voxel_size": [4.0, 4.0]}
    architecture = hydra.utils.instantiate(cfg.architecture, dims=2, in_channels=1)
    task = hydra.utils.instantiate(cfg.task, dims=2, voxel_size=meta["gt_voxel_size"])
    config = OmegaConf.to_container(cfg, resolve=True)
    module = RunModule(architecture, task, torch.optim.Adam, config=config, meta=meta)
    checkpoint = tmp_path / "sr.ckpt"
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, checkpoint
    )
    exported = export_model(checkpoint, tmp_path / "model", input_shape=[44, 44])
    assert exported.metadata["output_shape"] == [52, 52]
    assert exported.metadata["upsample_factor"] == [2, 2]
    assert exported.metadata["output_voxel_size"] == [4.0, 4.0]
    network, info = load(exported.folder)
    out = predict(np.zeros((30, 30), np.float32), network=network, meta=info)
    assert out.shape == (1, 60, 60)


def test_bad_exports_are_refused(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        export_main(
            ["--checkpoint", str(tmp_path / "missing.ckpt"), "--output", str(tmp_path / "o")]
        )
    assert exited.value.code == 2
    assert "missing.ckpt' does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"input_shape\)=\[83, 83\].*\[84, 84\] \(up\)"):
        export_model(trained, tmp_path / "a", input_shape=[83, 83])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        export_model(trained, tmp_path / "b")
    export_main(
        ["--checkpoint", trained, "--output", str(tmp_path / "c"), "--input-shape", "44", "44"]
    )
    assert json.loads((tmp_path / "c" / "model.json").read_text())["output_shape"] == [28, 28]


@pytest.mark.slow  # bioimageio.core tests the package: a few seconds to half a minute
def test_bioimageio_description_validates(trained, tmp_path):
    spec = pytest.importorskip("bioimageio.spec")

    exported = export_model(trained, tmp_path / "model", bioimageio=True, authors=["A. Person"])
    description = spec.load_description(exported.folder / "rdf.yaml", perform_io_checks=True)
    assert description.validation_summary.status == "valid-format"
    assert [a.size for a in description.inputs[0].axes[2:]] == [84, 84]
    assert [a.scale for a in description.outputs[0].axes[2:]] == [4.0, 4.0]
    assert description.inputs[0].preprocessing[-2].kwargs.gain == pytest.approx(1 / 255)
