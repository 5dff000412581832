"""dacapo-apply: a run's best checkpoint predicts, its best parameters post-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from mlflow.tracking import MlflowClient

from dacapo_hydra import tracking
from dacapo_hydra.cli import apply_main
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.inference.apply import apply
from dacapo_hydra.inference.options import ApplyOptions, Execution, PredictOptions
from dacapo_hydra.inference.predict import predict
from dacapo_hydra.model.load import load_cached as load_model
from dacapo_hydra.training.run import TrainResult
from tests.conftest import perturbed
from tests.data.test_ome_valid import assert_valid_ome_zarr

QUIET = Execution(progress=False)


@pytest.fixture(scope="module")
def run(run_3d: TrainResult) -> TrainResult:
    """A validated unet_tiny distance run, recorded in MLflow (shared by the session)."""
    assert run_3d.best_params is not None
    return run_3d


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(
        tmp_path_factory.mktemp("vol") / "vol.zarr", dims=3, shape=[30, 60, 60], offset=[0, 0, 0]
    )


def test_apply_predicts_with_the_best_checkpoint_and_post_processes_with_the_best_params(
    run: TrainResult, volume: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.zarr"
    result = apply(
        volume,
        "validate/raw",
        out,
        options=ApplyOptions(run_id=run.run_id, tracking_uri=run.tracking_uri),
        execution=QUIET,
    )
    record = tracking.read_best(run.tracking_uri, run.run_id)
    assert result.params == record["params"] and result.criterion == record["criterion"]
    best = tracking.checkpoint_for_run(run.tracking_uri, run.run_id, f"best_{result.criterion}")
    predict(best, volume, "validate/raw", out, "reference", execution=QUIET)
    group = zarr.open_group(str(out))
    np.testing.assert_array_equal(group["prediction/s0"][:], group["reference/s0"][:])
    task = load_model(best).task
    expected = task.post_process(group["reference/s0"][:], record["params"])
    # The binary masks of this semantic task are an OME-Zarr label image of the prediction.
    assert result.labels == (str(out), "prediction/labels/mask")
    labels = group["prediction/labels/mask/s0"][:]
    assert labels.dtype == expected.dtype
    np.testing.assert_array_equal(labels, expected)
    images = assert_valid_ome_zarr(out)
    assert list(images) == ["prediction", "reference"]
    assert images["prediction"].labels.label_paths == ["mask"]
    assert "image-label" in group["prediction/labels/mask"].attrs["ome"]


def test_bad_input_is_refused_before_writing(
    run: TrainResult, volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.zarr"
    client = MlflowClient(run.tracking_uri)
    unvalidated = client.create_run(client.get_run(run.run_id).info.experiment_id).info.run_id
    args = ["--input", str(volume), "validate/raw", "--output", str(out)]
    for model, message in (
        (["--run-id", unvalidated], "no validation result"),
        (["--run-id", "0123456789abcdef"], "no MLflow run"),
        (["--checkpoint", str(tmp_path / "nope.ckpt"), "--params", "threshold=0"], "nope.ckpt"),
        (["--checkpoint", run.checkpoint], "does not say which post-processing parameters"),
        (["--run-id", run.run_id, "--criterion", "nonsense"], "no validation result"),
    ):
        with pytest.raises(SystemExit) as exit_:
            apply_main([*model, "--tracking-uri", run.tracking_uri, *args])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        apply_main(
            [
                "--run-id",
                run.run_id,
                "--tracking-uri",
                run.tracking_uri,
                *args,
                "--input-voxel-size",
                "4",
                "4",
                "4",
            ]
        )
    assert "trained on" in capsys.readouterr().err
    assert not out.exists()
    half = PredictOptions(dtype="float16")
    predict(
        run.checkpoint, volume, "validate/raw", out, "prediction", options=half, execution=QUIET
    )
    with pytest.raises(SystemExit):
        apply_main(["--run-id", run.run_id, "--tracking-uri", run.tracking_uri, *args])
    assert "already holds a different array" in capsys.readouterr().err
    assert "labels" not in zarr.open_group(str(out))["prediction"]


@pytest.mark.slow
def test_a_rerun_resumes_only_with_the_same_model_and_parameters(
    run: TrainResult, volume: Path, tmp_path: Path
) -> None:
    other = perturbed(run.checkpoint, tmp_path / "other.ckpt")
    out = tmp_path / "out.zarr"

    def apply_with(checkpoint: str | Path, threshold: float, overwrite: bool = False) -> None:
        apply(
            volume,
            "validate/raw",
            out,
            options=ApplyOptions(
                checkpoint=checkpoint,
                params={"threshold": threshold},
                prediction=PredictOptions(input_shape=(44, 44, 44), overwrite=overwrite),
            ),
            execution=QUIET,
        )

    apply_with(run.checkpoint, 0.0)
    with pytest.raises(ValueError, match=r"/prediction: started with model sha256 [0-9a-f]{12}"):
        apply_with(other, 0.0)
    with pytest.raises(
        ValueError,
        match=r"/prediction/labels/mask: started with threshold 0\.0; this run has threshold 0\.5",
    ):
        apply_with(run.checkpoint, 0.5)
    apply_with(other, 0.5, overwrite=True)
    group = zarr.open_group(str(out))
    small = PredictOptions(input_shape=(44, 44, 44))
    predict(other, volume, "validate/raw", out, "reference", options=small, execution=QUIET)
    np.testing.assert_array_equal(group["prediction/s0"][:], group["reference/s0"][:])
    expected = load_model(other).task.post_process(group["reference/s0"][:], {"threshold": 0.5})
    np.testing.assert_array_equal(group["prediction/labels/mask/s0"][:], expected)
