"""Blockwise prediction: equals a whole-volume pass, resumes after a kill, scales on Dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from monai.inferers import sliding_window_inference

from dacapo_hydra.cli import predict_main
from dacapo_hydra.data.array import ZarrArray
from dacapo_hydra.data.output import LEDGER_DIR
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.inference.options import Execution, PredictOptions
from dacapo_hydra.inference.predict import PredictResult, predict
from dacapo_hydra.inference.provenance import model_sha256
from dacapo_hydra.model.load import load, load_cached
from dacapo_hydra.model.plan import BlockPlan
from dacapo_hydra.model.predict import predict_roi
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.training.build import build
from tests.conftest import perturbed

SMALL = (44, 44, 44)  # unet_tiny's training input: 28^3 output blocks
QUIET = Execution(progress=False)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3D synthetic volume of 8 nm voxels, large enough for several prediction blocks."""
    return write_synthetic(
        tmp_path_factory.mktemp("vol") / "vol.zarr",
        dims=3,
        shape=[40, 100, 90],
        offset=[16, 32, 48],
    )


def sha(checkpoint: str | Path) -> str:
    """The start of a checkpoint's model sha256, as refusals show it."""
    model = load_cached(checkpoint)
    return model_sha256(model.state_dict(), model.spec.hparams)[:12]


def whole_volume_prediction(checkpoint: str, container: Path, dataset: str) -> np.ndarray:
    model = load_cached(checkpoint)
    raw = ZarrArray.open(container, dataset)
    context = [c * v for c, v in zip(model.architecture.context, raw.voxel_size, strict=True)]
    data = raw.read_padded(raw.roi.grow(context), "reflect").astype(np.float32) / 255
    with torch.inference_mode():
        return model(torch.from_numpy(data)[None, None])[0].numpy()


def test_blockwise_equals_whole_volume_pass(trained_3d: str, volume: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    result = predict(
        trained_3d,
        volume,
        "validate/raw",
        out,
        "distance",
        options=PredictOptions(input_shape=SMALL),
        execution=QUIET,
    )
    assert result.blocks == 2 * 4 * 4
    blockwise = zarr.open_group(str(out))["distance/s0"][:]
    np.testing.assert_allclose(
        blockwise, whole_volume_prediction(trained_3d, volume, "validate/raw"), atol=1e-5
    )
    written = ZarrArray.open(out, "distance")
    raw = ZarrArray.open(volume, "validate/raw")
    assert written.roi == raw.roi and written.voxel_size == raw.voxel_size
    assert written.num_channels == 1


def sliding_window_reference(model: TrainedModel, raw: ZarrArray, plan: BlockPlan) -> np.ndarray:
    """MONAI's Gaussian-blended sliding window over the whole volume, in memory."""
    data = raw.read(raw.roi).astype(np.float32) / 255
    with torch.inference_mode():
        return sliding_window_inference(
            torch.from_numpy(data)[None, None],
            plan.input_shape,
            1,
            model,
            overlap=plan.overlap,
            mode="gaussian",
        )[0].numpy()


@pytest.mark.parametrize(
    ("datasplit", "architecture", "overrides", "window", "overlap", "block"),
    [
        pytest.param(
            "synthetic_3d",
            "unet_tiny",
            ["architecture.padding=same", "architecture.num_fmaps=4"],
            (16, 16, 16),
            0.5,
            (16, 16, 16),
            marks=pytest.mark.slow,  # the 2D case below stays in the fast tier
        ),
        (
            "synthetic_2d",
            "monai_basic_unet",
            ["architecture.network.features=[4,4,4,4,4,4]"],
            (32, 32),
            0.25,
            (48, 48),
        ),
    ],
)
def test_same_padding_blends_like_a_whole_volume_sliding_window(
    compose_tiny,
    tmp_path: Path,
    datasplit: str,
    architecture: str,
    overrides: list[str],
    window: tuple[int, ...],
    overlap: float,
    block: tuple[int, ...],
) -> None:
    torch.manual_seed(0)
    model = build(
        compose_tiny(datasplit=datasplit, architecture=architecture, overrides=overrides)
    ).module.model.eval()
    shape = [20, 30, 24] if len(window) == 3 else [100, 90]
    vs = list(model.spec.voxel_size)
    vol = write_synthetic(tmp_path / "vol.zarr", len(window), shape, vs, [0] * len(window))
    raw = ZarrArray.open(vol, "validate/raw")
    plan = BlockPlan.for_model(model, raw.voxel_size, window, overlap, block)
    assert plan.blend
    kwargs = {"input_shape": window, "overlap": overlap, "block_shape": block}
    out = tmp_path / "out.zarr"
    result = predict(
        model,
        vol,
        "validate/raw",
        out,
        "p",
        options=PredictOptions(**kwargs),
        execution=QUIET,
    )
    blocks = tuple(int(np.ceil(s / b)) for s, b in zip(raw.spatial_shape, block, strict=True))
    assert result.blocks == np.prod(blocks) > 3
    written = zarr.open_group(str(out))["p/s0"][:]
    reference = sliding_window_reference(model, raw, plan)
    np.testing.assert_allclose(written, reference, atol=1e-5)
    np.testing.assert_array_equal(
        predict_roi(model, raw, raw.roi, lambda x: x.astype(np.float32) / 255, "reflect", **kwargs),
        written,
    )


@pytest.mark.slow
def test_roi_dtype_and_mirroring(trained_3d: str, volume: Path, tmp_path: Path) -> None:
    roi = Roi((16 + 80.0, 32 + 160.0, 48 + 80.0), (160.0, 320.0, 240.0))
    assert ZarrArray.open(volume, "validate/raw").roi.contains(roi)
    out = tmp_path / "out.zarr"
    for name, options in (
        ("f32", PredictOptions(roi=roi)),
        ("u8", PredictOptions(roi=roi, dtype="uint8", value_range=(-1, 1))),
        ("tta", PredictOptions(roi=roi, mirror=True)),
    ):
        predict(trained_3d, volume, "validate/raw", out, name, options=options, execution=QUIET)
    f32 = zarr.open_group(str(out))["f32/s0"][:]
    u8 = zarr.open_group(str(out))["u8/s0"][:]
    tta = zarr.open_group(str(out))["tta/s0"][:]
    assert f32.shape == (1, 20, 40, 30) and u8.dtype == np.uint8
    np.testing.assert_allclose(u8, np.round((f32 + 1) / 2 * 255), atol=1)
    assert not np.allclose(tta, f32) and np.abs(tta - f32).mean() < 0.2
    assert ZarrArray.open(out, "f32").offset == roi.begin


@pytest.mark.slow
def test_two_dask_workers_give_the_same_output(
    trained_3d: str, volume: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.zarr"
    options = PredictOptions(input_shape=SMALL)
    predict(trained_3d, volume, "validate/raw", out, "one", options=options, execution=QUIET)
    two = Execution(workers=2, progress=False)
    predict(trained_3d, volume, "validate/raw", out, "two", options=options, execution=two)
    group = zarr.open_group(str(out))
    np.testing.assert_allclose(group["two/s0"][:], group["one/s0"][:], atol=1e-6)


@pytest.mark.slow
def test_kill_and_resume_gives_identical_output(
    trained_3d: str, volume: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.zarr"
    small = PredictOptions(input_shape=SMALL)
    predict(trained_3d, volume, "validate/raw", out, "reference", options=small, execution=QUIET)
    command = [
        sys.executable,
        "-c",
        "from dacapo_hydra.cli import predict_main; predict_main()",
        "--checkpoint",
        trained_3d,
        "--input-shape",
        "44",
        "44",
        "44",
        "--input",
        str(volume),
        "validate/raw",
        "--output",
        str(out),
        "--prediction-dataset",
        "resumed",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / LEDGER_DIR / "resumed" / "blocks.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (ledger.exists() and ledger.stat().st_size >= 16):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = ledger.stat().st_size // 8
    result = predict(
        trained_3d, volume, "validate/raw", out, "resumed", options=small, execution=QUIET
    )
    assert 0 < done_before < result.blocks
    assert result.blocks_done_now == result.blocks - done_before
    group = zarr.open_group(str(out))
    np.testing.assert_array_equal(group["resumed/s0"][:], group["reference/s0"][:])


@pytest.mark.slow
def test_a_killed_prediction_resumed_with_another_checkpoint_is_refused(
    trained_3d: str, volume: Path, tmp_path: Path
) -> None:
    other = perturbed(trained_3d, tmp_path / "other.ckpt")
    out = tmp_path / "out.zarr"
    small = PredictOptions(input_shape=SMALL)
    for checkpoint, name in ((trained_3d, "reference"), (other, "other")):
        predict(checkpoint, volume, "validate/raw", out, name, options=small, execution=QUIET)

    def command(checkpoint: str | Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-c",
            "from dacapo_hydra.cli import predict_main; predict_main()",
            *("--checkpoint", str(checkpoint), "--input-shape", "44", "44", "44"),
            *("--input", str(volume), "validate/raw", "--output", str(out)),
            *("--prediction-dataset", "resumed", *extra),
        ]

    def finish(checkpoint: str | Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command(checkpoint, *extra), capture_output=True, text=True, timeout=300
        )

    proc = subprocess.Popen(
        command(trained_3d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ledger = out / LEDGER_DIR / "resumed" / "blocks.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (ledger.exists() and ledger.stat().st_size >= 16):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = ledger.stat().st_size // 8
    refused = finish(other)
    errors = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr[-2000:]
    assert errors[0] == (
        f"dacapo-predict: error: {out}/resumed: started with model sha256 {sha(trained_3d)}..; "
        f"this run has model sha256 {sha(other)}..; "
        "use --overwrite (overwrite=True) to start afresh"
    )
    assert ledger.stat().st_size // 8 == done_before
    resumed = finish(trained_3d)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    group = zarr.open_group(str(out))
    np.testing.assert_array_equal(group["resumed/s0"][:], group["reference/s0"][:])
    overwritten = finish(other, "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr[-2000:]
    np.testing.assert_array_equal(group["resumed/s0"][:], group["other/s0"][:])


# 1 x 2 x 2 blocks of unet_tiny's 28^3 output at 8 nm (SMALL input).
FOUR_BLOCKS = Roi((16.0, 32.0, 48.0), (224.0, 448.0, 448.0))


def test_resume_with_another_model_input_or_parameters_is_refused(
    trained_3d: str, volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = perturbed(trained_3d, tmp_path / "other.ckpt")
    out = tmp_path / "out.zarr"

    def run(checkpoint: str | Path, dataset: str = "p", **kwargs: object) -> PredictResult:
        return predict(
            checkpoint,
            volume,
            kwargs.pop("raw_dataset", "validate/raw"),
            out,
            dataset,
            options=PredictOptions(roi=FOUR_BLOCKS, input_shape=SMALL, **kwargs),
            execution=QUIET,
        )

    assert run(trained_3d).blocks == 4
    array = zarr.open_group(str(out))["p/s0"]
    whole = array[:]
    # As a kill would leave it: two blocks done, two not.
    ledger = out / LEDGER_DIR / "p" / "blocks.log"
    records = np.fromfile(ledger, "<i8")
    records[2:].tofile(ledger)
    for linear in records[:2]:
        index = np.unravel_index(int(linear), tuple(s // 28 for s in array.shape[1:]))
        array[(slice(None), *_voxels_of(index))] = 0
    partial = array[:]
    where = f"{out}/p"
    refusals = {
        "model": ({}, other, f"model sha256 {sha(trained_3d)}..", f"model sha256 {sha(other)}.."),
        "input": (
            {"raw_dataset": "train/raw"},
            trained_3d,
            f"input {volume.resolve()}:validate/raw",
            f"input {volume.resolve()}:train/raw",
        ),
        "mirror": ({"mirror": True}, trained_3d, "mirror false", "mirror true"),
    }
    for kwargs, checkpoint, before, now in refusals.values():
        with pytest.raises(ValueError) as refused:
            run(checkpoint, **kwargs)
        assert str(refused.value) == (
            f"{where}: started with {before}; this run has {now}; "
            "use --overwrite (overwrite=True) to start afresh"
        )
        np.testing.assert_array_equal(zarr.open_group(str(out))["p/s0"][:], partial)
        assert ledger.stat().st_size // 8 == 2
    # The command says the same in one line, before writing anything.
    argv = [
        *("--checkpoint", str(other), "--input", str(volume), "validate/raw"),
        *("--output", str(out), "--prediction-dataset", "p", "--input-shape", "44", "44", "44"),
        *("--roi", "16:240,32:480,48:496"),
    ]
    with pytest.raises(SystemExit) as exit_:
        predict_main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert err.startswith(f"dacapo-predict: error: {where}: started with model sha256 ")
    np.testing.assert_array_equal(zarr.open_group(str(out))["p/s0"][:], partial)
    # The same model resumes: only the missing blocks run, giving the uninterrupted output.
    assert run(trained_3d).blocks_done_now == 2
    np.testing.assert_array_equal(zarr.open_group(str(out))["p/s0"][:], whole)
    # --overwrite starts afresh with the other model: all of it from that model.
    predict_main([*argv, "--overwrite"])
    assert "4 of 4 blocks" in capsys.readouterr().out
    assert run(other, "q").blocks_done_now == 4
    group = zarr.open_group(str(out))
    np.testing.assert_array_equal(group["p/s0"][:], group["q/s0"][:])
    assert not np.allclose(group["p/s0"][:], whole)
    assert run(other).blocks_done_now == 0  # the output now records the other model


def _voxels_of(index: tuple[int, ...]) -> tuple[slice, ...]:
    """The output voxels of the block at grid `index` of the 28^3-voxel blocks."""
    return tuple(slice(28 * int(i), 28 * (int(i) + 1)) for i in index)


def test_bad_input_is_refused_before_writing(trained_3d: str, volume: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        predict(tmp_path / "nope.ckpt", volume, "validate/raw", out, "p", execution=QUIET)
    with pytest.raises(ValueError, match="trained on"):
        predict(
            trained_3d,
            volume,
            "validate/raw",
            out,
            "p",
            options=PredictOptions(raw_voxel_size=[4, 4, 4]),
            execution=QUIET,
        )
    assert not out.exists()
    half = PredictOptions(dtype="float16")
    predict(trained_3d, volume, "validate/raw", out, "p", options=half, execution=QUIET)
    before = zarr.open_group(str(out))["p/s0"][:]
    with pytest.raises(ValueError, match="already holds a different array"):
        predict(
            trained_3d,
            volume,
            "validate/raw",
            out,
            "p",
            options=PredictOptions(dtype="float32"),
            execution=QUIET,
        )
    np.testing.assert_array_equal(zarr.open_group(str(out))["p/s0"][:], before)


@pytest.mark.slow
def test_half_precision_model_predicts(trained_3d: str, volume: Path) -> None:
    model = load(trained_3d)
    raw = ZarrArray.open(volume, "validate/raw")
    normalize = model.spec.normalizer
    full = predict_roi(model, raw, raw.roi, normalize, "reflect", input_shape=SMALL)
    half = predict_roi(
        model.to(torch.bfloat16), raw, raw.roi, normalize, "reflect", input_shape=SMALL
    )
    assert half.dtype == np.float32 and np.isfinite(half).all()
    assert np.abs(half - full).max() < 0.05
