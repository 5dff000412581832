"""Whole-volume validation during training: scores, best checkpoints, snapshots, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow.artifacts
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import zarr
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from PIL import Image

from dacapo_hydra.cli import validate_main
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.transforms import ConstantArray
from dacapo_hydra.errors import DataError
from dacapo_hydra.inference.options import Execution, PredictOptions
from dacapo_hydra.inference.predict import predict
from dacapo_hydra.training.build import build
from dacapo_hydra.training.callbacks import BestCheckpoint
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.run import train
from dacapo_hydra.training.validation import Validator
from tests.conftest import REPO, tiny_overrides


@pytest.mark.slow
def test_validation_logs_scores_and_keeps_the_best(compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=["iterations=6", "validation_interval=2", "snapshot_interval=3"],
    )
    result = train(cfg)
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    criterion = run.data.tags["criterion"]
    assert criterion == result.criterion == "dice"
    history = client.get_metric_history(result.run_id, f"validation/{criterion}")
    assert sorted(m.step for m in history) == [2, 4, 6]
    best_logged = max(history, key=lambda m: (m.value, -m.step))
    record = json.loads(run.data.tags[f"best.{criterion}"])
    # Every score has its best as a metric; only checkpointed criteria get a record tag.
    assert {"validation/best/dice", "validation/best/jaccard", "validation/best/hausdorff"} <= set(
        run.data.metrics
    )
    assert [t for t in run.data.tags if t.startswith("best.")] == ["best.dice"]
    assert record["iteration"] == best_logged.step == result.best_iteration
    assert record["score"] == pytest.approx(best_logged.value)
    # One parameter set is reported: validation/best/<score> are all the scores of the record's set.
    assert not [k for k in run.data.metrics if k.startswith("validation/synthetic_2d_validate/")]
    assert record["params"] and record["scores"][criterion] == pytest.approx(record["score"])
    for name, value in record["scores"].items():
        if np.isfinite(value):
            assert run.data.metrics[f"validation/best/{name}"] == pytest.approx(value)
    local = mlflow.artifacts.download_artifacts(
        run_id=result.run_id,
        artifact_path=f"checkpoints/best_{criterion}.ckpt",
        tracking_uri=result.tracking_uri,
    )
    assert torch.load(local, weights_only=True)["global_step"] == record["iteration"]
    images = [
        a.path for a in client.list_artifacts(result.run_id, "snapshots") if a.path.endswith(".png")
    ]
    assert len(images) == 2  # steps 3 and 6
    png = mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path=images[0], tracking_uri=result.tracking_uri
    )
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] >= 96
    prediction = zarr.open_group(str(Path(result.run_dir) / "validation.zarr"))
    assert prediction["synthetic_2d_validate/prediction/s0"].shape[0] == 1
    table = client.download_artifacts(result.run_id, "validation/scores.csv")
    assert len(Path(table).read_text().splitlines()) > 3


@pytest.mark.slow
def test_each_criterion_keeps_its_own_best_checkpoint(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    """Lightning's ModelCheckpoint per criterion saves what the best records say."""
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[
            "iterations=8",
            "validation_interval=2",
            "snapshot_interval=0",
            "validation_criteria=[dice,hausdorff]",
        ],
    )
    result = train(cfg)
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    logged = {a.path for a in client.list_artifacts(result.run_id, "checkpoints")}
    folder = Path(result.checkpoint).parent
    for criterion, mode in (("dice", "max"), ("hausdorff", "min")):
        record = json.loads(run.data.tags[f"best.{criterion}"])
        assert f"checkpoints/best_{criterion}.ckpt" in logged
        state = torch.load(folder / f"best_{criterion}.ckpt", weights_only=True)
        assert state["global_step"] == record["iteration"]
        (key,) = [k for k in state["callbacks"] if f"'validation/{criterion}'" in k]
        assert key.startswith("BestCheckpoint") and f"'mode': '{mode}'" in key
        assert float(state["callbacks"][key]["best_model_score"]) == record["score"]
        (validation,) = [v for k, v in state["callbacks"].items() if "WholeVolume" in k]
        assert validation["best"][criterion]["score"] == record["score"]


def test_a_best_checkpoint_adopts_a_restored_record(tmp_path: Path) -> None:
    """A record restored without the callback's state (an older checkpoint) is its best."""
    best = BestCheckpoint(tmp_path, "hausdorff", False, client=None, run_id="run")
    assert (best.monitor, best.mode, best.save_top_k) == ("validation/hausdorff", "min", 1)
    best.adopt(12.5)
    assert best.best_model_path == str(tmp_path / "best_hausdorff.ckpt")
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)

    def beats(score: float) -> bool:
        return best.check_monitor_top_k(trainer, torch.tensor(score, dtype=torch.float64))

    assert not beats(12.5) and not beats(13.0) and beats(12.25)
    assert best.state_dict()["best_model_score"] == 12.5


def test_validation_prediction_is_what_predict_writes(
    compose_tiny: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_tiny(datasplit="synthetic_2d")
    built = build(cfg)
    module = built.module.model.eval()
    dataset = built.split.validate[0]
    validator = Validator(built.split, built.task)
    roi, in_memory = validator.predict(module, dataset)
    container = Path(cfg.datasplit.synthetic.container)
    options, quiet = PredictOptions(roi=roi), Execution(progress=False)
    predict(
        module,
        container,
        "validate/raw",
        tmp_path / "p.zarr",
        "p",
        options=options,
        execution=quiet,
    )
    np.testing.assert_allclose(
        zarr.open_group(str(tmp_path / "p.zarr"))["p/s0"][:], in_memory, atol=1e-6
    )


def test_an_empty_validation_ground_truth_is_not_scored(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    # Empty against empty would score a perfect dice: the validator refuses to score it.
    built = build(compose_tiny(datasplit="synthetic_2d"))
    dataset = built.split.validate[0]
    dataset.gt = ConstantArray(dataset.gt, value=0, dtype="uint64")
    with pytest.raises(DataError, match=r"^validation dataset synthetic_2d_validate: the gro"):
        Validator(built.split, built.task).run(built.module)


@pytest.mark.slow
def test_start_from_a_run_and_validate_command(
    compose_tiny: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    first = train(compose_tiny(datasplit="synthetic_2d"))
    cfg = compose_tiny(datasplit="synthetic_2d", overrides=[f"start=run:{first.run_id}"])
    started = build(cfg).module
    best_path = Path(first.checkpoint).with_name(f"best_{first.criterion}.ckpt")
    best = RunModule.from_checkpoint(best_path)
    for name, tensor in best.state_dict().items():
        torch.testing.assert_close(started.state_dict()[name], tensor)
    validate_main([first.run_id, "--tracking-uri", first.tracking_uri])
    out = capsys.readouterr().out
    out = out[out.index(f"\nrun {first.run_id}, best checkpoint") + 1 :]  # after the progress bar
    assert "synthetic_2d_validate" in out and f"best {first.criterion}:" in out
    split = DataSplit.from_config(cfg.datasplit)
    assert len(out.splitlines()) == 2 + len(split.validate) * len(started.task.parameter_grid()) + 1


@pytest.mark.slow
def test_resume_after_kill_finishes_the_same_run(tmp_path: Path) -> None:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs")}
    args = [
        sys.executable,
        str(REPO / "train.py"),
        *tiny_overrides("synthetic_2d"),
        "datasplit=synthetic_2d",
        "trainer=fast",
        "iterations=400",
        "validation_interval=5",
        "snapshot_interval=0",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while time.time() < deadline and not list(
        (tmp_path / "outputs").glob("runs/*/checkpoints/iteration_000010.ckpt")
    ):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (last,) = (tmp_path / "outputs").glob("runs/*/checkpoints/last.ckpt")
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert killed_at < 400
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("dacapo").experiment_id])
    assert run.info.status == "RUNNING"  # a kill -9 leaves no chance to say otherwise
    resumed = subprocess.run(
        [
            *args[:-3],
            "iterations=30",
            "validation_interval=5",
            "snapshot_interval=0",
            "resume=true",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("dacapo").experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert runs[0].info.status == "FINISHED"
    assert torch.load(last, weights_only=True)["global_step"] == 30
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "validation/dice")}
    assert {25, 30} <= steps


def test_the_reported_scores_belong_to_one_parameter_set() -> None:
    from dacapo_hydra.tasks.affinities import AffinitiesTask
    from dacapo_hydra.training.validation import ScoreRow

    task = AffinitiesTask(2, (4.0, 4.0))
    validator = Validator.__new__(Validator)
    validator.directions = task.score_directions()
    rows = [
        ScoreRow("a", {"bias": 0.3}, {"detection_f1": 0.5, "detection_precision": 0.95}),
        ScoreRow("b", {"bias": 0.3}, {"detection_f1": 0.7, "detection_precision": 0.85}),
        ScoreRow("a", {"bias": 0.7}, {"detection_f1": 0.8, "detection_precision": 0.6}),
        ScoreRow("b", {"bias": 0.7}, {"detection_f1": 0.8, "detection_precision": 0.7}),
    ]
    best = validator.best_set(rows, 10, "detection_f1")
    assert best is not None and best.params == {"bias": 0.7} and best.iteration == 10
    assert best.score == pytest.approx(0.8)
    # Not the best precision of any set (0.9 for bias 0.3): the chosen set's own.
    assert best.scores == pytest.approx({"detection_f1": 0.8, "detection_precision": 0.65})
    assert best.per_dataset == {"a": 0.8, "b": 0.8}
