"""A tiny training run end to end, in process, as the Python API runs it."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import mlflow.artifacts
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.build import build
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.run import train


@pytest.mark.slow
def test_train_records_a_finished_mlflow_run(compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(task="affinities", trainer="fast")
    result = train(cfg)
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    # The tiny-data overrides change the datasplit: its name says so.
    assert run.info.run_name == "synthetic_3d*-unet_tiny-affinities-fast"
    for group, option in cfg.choices.items():
        assert run.data.tags[group] == option
    assert run.data.params["iterations"] == "4"
    assert run.data.params["trainer.batch_size"] == "1"
    history = client.get_metric_history(result.run_id, "train/loss")
    assert len(history) >= 2
    assert all(math.isfinite(m.value) for m in history)
    assert [m.step for m in client.get_metric_history(result.run_id, "val/loss")] == [1, 3]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "checkpoints"} <= artifacts
    checkpoints = {a.path for a in client.list_artifacts(result.run_id, "checkpoints")}
    assert "checkpoints/last.ckpt" in checkpoints
    local = mlflow.artifacts.download_artifacts(
        run_id=result.run_id,
        artifact_path="checkpoints/last.ckpt",
        tracking_uri=result.tracking_uri,
    )
    module = RunModule.from_checkpoint(local)
    # Nearest neighbours, and long-range steps from the measured cell size.
    channels = module.task.num_channels
    assert channels == len(module.task.neighborhood) >= 3
    x = torch.rand(1, 1, 44, 44, 44)
    assert module.predict(x).shape == (1, channels, 28, 28, 28)
    assert result.iterations == 4


@pytest.mark.slow
def test_training_reduces_the_loss(compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=["iterations=60", "validation_interval=60", "trainer.batch_size=4"],
    )
    result = train(cfg)
    history = MlflowClient(result.tracking_uri).get_metric_history(result.run_id, "train/loss")
    values = [m.value for m in sorted(history, key=lambda m: m.step)]
    first, last = sum(values[:2]) / 2, sum(values[-2:]) / 2
    assert last < first


@pytest.mark.slow
def test_start_from_checkpoint_loads_its_weights(compose_tiny: Callable[..., DictConfig]) -> None:
    first = train(compose_tiny(datasplit="synthetic_2d"))
    cfg = compose_tiny(datasplit="synthetic_2d", overrides=[f"start={first.checkpoint}"])
    started = build(cfg).module
    trained = RunModule.from_checkpoint(first.checkpoint)
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(started.state_dict()[name], tensor)


def test_missing_start_checkpoint_is_refused(
    compose_tiny: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_tiny(overrides=[f"start={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(ConfigError, match="nope.ckpt"):
        build(cfg)


@pytest.mark.slow
def test_a_crash_marks_the_run_failed(compose_tiny: Callable[..., DictConfig]) -> None:
    # A callback that raises inside fit(), after the MLflow run exists.
    cfg = compose_tiny(
        overrides=["+callbacks.crash._target_=tests.conftest.Crash", "+callbacks.crash.at=1"]
    )
    with pytest.raises(RuntimeError, match="crash at iteration 1"):
        train(cfg)
    uri = f"sqlite:///{Path(cfg.paths.output_dir).resolve() / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("dacapo").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_bad_optimiser_value_is_refused_before_a_run_exists(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    cfg = compose_tiny(overrides=["trainer.optimizer.lr=-1.0"])
    with pytest.raises(
        ConfigError, match=r"^trainer\.optimizer: torch\.optim\.RAdam refuses it: .*-1"
    ):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "mlflow.db").exists()
