"""MLflow: the logged model predicts, dataset inputs, stores, names, tags, the sweep's parent."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import hydra
import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from dacapo_hydra import runs, tracking
from dacapo_hydra.api import compose
from dacapo_hydra.tracking.model import EXAMPLE_MAX_VOXELS, example_shape
from dacapo_hydra.tracking.table import RUN_COLUMNS
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.run import TrainResult, train
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[TrainResult]:
    """A tiny validated 2D run with a registered model and system metrics every second."""
    out = tmp_path_factory.mktemp("tracked")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL",)}
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    cfg = compose(
        datasplit="synthetic_2d",
        task="affinities",
        overrides=[
            *tiny_overrides("synthetic_2d", out),
            "mlflow.register_model_name=tiny_cells",
            "mlflow.log_system_metrics=true",
        ],
    )
    try:
        result = train(cfg)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # Lightning's logger sets $MLFLOW_TRACKING_URI to the run's store; the run puts it back.
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before
    yield result


def test_logged_model_loads_and_predicts_like_the_module(
    run: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    mlflow.set_tracking_uri(run.tracking_uri)
    network = mlflow.pytorch.load_model(f"runs:/{run.run_id}/model")
    best = Path(run.checkpoint).with_name(f"best_{run.criterion}.ckpt")
    module = RunModule.from_checkpoint(best)
    x = torch.rand(2, 1, 84, 84)  # the eval input shape, two at once
    with torch.no_grad():
        torch.testing.assert_close(network(x), module.predict(x))
    info = mlflow.models.get_model_info(f"runs:/{run.run_id}/model")
    assert info.signature.inputs.inputs[0].shape == (-1, 1, 84, 84)
    assert info.signature.outputs.inputs[0].shape == (-1, module.task.num_channels, 68, 68)
    assert info.metadata["checkpoint"] == f"best_{run.criterion}"
    assert info.metadata["eval_input_shape"] == [84, 84]
    assert info.metadata["input_voxel_size"] == [4.0, 4.0]
    example = mlflow.models.Model.load(f"runs:/{run.run_id}/model").load_input_example()
    assert example.shape == (1, 1, 84, 84)


def test_the_model_is_registered(run: TrainResult) -> None:
    client = MlflowClient(run.tracking_uri)
    (version,) = client.search_model_versions("name = 'tiny_cells'")
    assert version.run_id == run.run_id and version.status == "READY"
    # Described and aliased: the first version is the best.
    assert version.description.startswith("datasplit synthetic_2d*, task affinities")
    assert f"; voxel size 4×4 nm; run {run.run_name} ({run.run_id})" in version.description
    assert version.tags["criterion"] == run.criterion
    assert client.get_model_version_by_alias("tiny_cells", "best").version == version.version
    model = client.get_registered_model("tiny_cells")
    assert model.description.startswith("dacapo-hydra network; best: version 1, datasplit")


def test_datasplit_inputs_and_system_metrics(run: TrainResult) -> None:
    client = MlflowClient(run.tracking_uri)
    logged = client.get_run(run.run_id)
    inputs = {
        d.dataset.name: ({t.key: t.value for t in d.tags}, json.loads(d.dataset.profile))
        for d in logged.inputs.dataset_inputs
    }
    assert set(inputs) == {"synthetic_2d_train", "synthetic_2d_validate"}
    tags, profile = inputs["synthetic_2d_train"]
    # The tiny-data overrides change the datasplit, so it is not tagged as the packaged one.
    assert tags == {"mlflow.data.context": "training", "datasplit": "synthetic_2d*"}
    assert profile["raw"].endswith("synthetic_2d.zarr/train/raw")
    assert profile["gt"].endswith("synthetic_2d.zarr/train/raw/labels/labels")
    assert inputs["synthetic_2d_validate"][0]["mlflow.data.context"] == "validation"
    assert any(key.startswith("system/") for key in logged.data.metrics)
    assert logged.data.tags[tracking.DIRECTION_TAG] == "true"


def test_metrics_stay_compact(run: TrainResult) -> None:
    """Losses, the chosen set's scores and the best ones; nothing per (dataset, parameter set)."""
    metrics = MlflowClient(run.tracking_uri).get_run(run.run_id).data.metrics
    prefixes = {key.split("/")[0] for key in metrics if "/" in key}
    assert prefixes <= {"train", "val", "validation", "best", "system"}
    assert not [key for key in metrics if "synthetic_2d_validate" in key]


def test_experiment_opens_in_the_model_training_view(run: TrainResult) -> None:
    experiment = MlflowClient(run.tracking_uri).get_experiment(run.experiment_id)
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert tracking.ui_url(run.experiment_id, run.run_id) == (
        f"http://127.0.0.1:5000/#/experiments/{run.experiment_id}/runs/{run.run_id}"
        "?workflowType=machine_learning"
    )


def test_runs_table(run: TrainResult) -> None:
    client = MlflowClient(run.tracking_uri)
    parent = client.create_run(run.experiment_id, tags={"dacapo.kind": "sweep"}).info.run_id
    child = client.create_run(
        run.experiment_id, run_name="child", tags={"mlflow.parentRunId": parent, "task": "dummy"}
    ).info.run_id
    try:
        table = runs(run.tracking_uri)
        assert tuple(table.columns) == RUN_COLUMNS
        assert list(table.run_id) == [child, run.run_id]  # newest first; no sweep parent
        row = table.set_index("run_id").loc[run.run_id]
        assert row.run_name == run.run_name and row.status == "FINISHED"
        assert (row.datasplit, row.architecture, row.task, row.trainer) == (
            "synthetic_2d*",  # the tiny-data overrides change it
            "unet_tiny",
            "affinities",
            "default",
        )
        assert row.criterion == run.criterion
        assert row.best_score == pytest.approx(run.best_score)
        assert row.best_iteration == run.best_iteration
        assert row.best_params == run.best_params
        empty = table.set_index("run_id").loc[child]
        assert empty.parent_run_id == parent and np.isnan(empty.best_score)
        with pytest.raises(KeyError, match="no experiment 'nope'"):
            runs(run.tracking_uri, experiment="nope")
    finally:
        client.delete_run(child)
        client.delete_run(parent)


def test_example_shape_keeps_json_examples_small() -> None:
    cfg = compose(datasplit="synthetic_3d")
    architecture = hydra.utils.instantiate(cfg.architecture, dims=3, in_channels=1)
    shape = example_shape(architecture)
    assert np.prod(shape) <= EXAMPLE_MAX_VOXELS
    assert architecture.is_valid_input_shape(shape)


def test_tracking_uri_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DACAPO_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert compose().mlflow.tracking_uri == f"sqlite:///{tmp_path / 'out'}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////data/env.db")
    assert compose().mlflow.tracking_uri == "sqlite:////data/env.db"
    explicit = compose(overrides=["mlflow.tracking_uri=sqlite:////data/explicit.db"])
    assert explicit.mlflow.tracking_uri == "sqlite:////data/explicit.db"


def test_find_store_never_creates_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DACAPO_OUTPUT_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="outputs/mlflow.db does not exist"):
        tracking.find_store()
    monkeypatch.setenv("DACAPO_OUTPUT_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match=r"elsewhere/mlflow.db \(from \$DACAPO_OUTPUT_DIR"):
        tracking.find_store()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.org:5000")
    assert tracking.find_store() == "http://mlflow.example.org:5000"
    with pytest.raises(FileNotFoundError, match=r"x.db \(from --tracking-uri\)"):
        tracking.find_store("sqlite:///x.db")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "mlflow.db").touch()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("DACAPO_OUTPUT_DIR")
    assert tracking.find_store() == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"


def test_override_tags_and_child_names() -> None:
    overrides = ["task=affinities", "+trainer.profiler=simple", "~foo", "start=run:ab/last"]
    assert tracking.override_tags(overrides) == {
        "override.task": "affinities",
        "override.trainer.profiler": "simple",
        "override.foo": "",
        "override.start": "run:ab/last",
    }
    assert (
        tracking.child_name(["task", "architecture"], ["architecture=unet_small", *overrides])
        == "affinities unet_small"
    )
    assert tracking.child_name(["trainer.optimizer.lr"], ["trainer.optimizer.lr=0.01"]) == "lr=0.01"
    assert tracking.child_name(["seed"], overrides) is None


def test_sweep_definition_reads_overrides_and_sweeper_params() -> None:
    config = OmegaConf.create(
        {
            "hydra": {
                "overrides": {
                    "task": ["task=distance,affinities", "iterations=5", "seed=range(3)"]
                },
                "sweeper": {"params": {"trainer.optimizer.lr": "tag(log, interval(1e-5, 1e-2))"}},
            }
        }
    )
    assert tracking.sweep_definition(config) == {
        "task": "distance,affinities",
        "seed": "range(3)",
        "trainer.optimizer.lr": "tag(log, interval(1e-5, 1e-2))",
    }


def test_best_child_is_recorded_on_the_parent(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = tracking.ensure_experiment(uri, "dacapo", (tmp_path / "art").as_uri())
    client = MlflowClient(uri)
    parent = client.create_run(experiment, tags={"sweep.axes": "task"}).info.run_id

    def child(name: str, criterion: str, score: float, higher: bool = True) -> str:
        tags = {
            "mlflow.parentRunId": parent,
            tracking.CRITERION_TAG: criterion,
            f"best.{criterion}": json.dumps({"score": score, "iteration": 2, "params": {}}),
            tracking.DIRECTION_TAG: "true" if higher else "false",
        }
        return client.create_run(experiment, run_name=name, tags=tags).info.run_id

    child("task=distance,lr=1", "dice", 0.5)
    winner = child("task=distance,lr=2", "dice", 0.8)
    child("task=affinities,lr=1", "voi", 0.3, higher=False)
    best = tracking.record_best_child(uri, parent)
    assert best == {
        "run_id": winner,
        "name": "task=distance,lr=2",
        "criterion": "dice",
        "score": 0.8,
    }
    logged = client.get_run(parent).data
    assert logged.tags["best_child"] == winner
    assert logged.tags["best_child.name"] == "task=distance,lr=2"
    assert logged.metrics == {"validation/best_child/dice": 0.8, "validation/best_child/voi": 0.3}
    # Criteria are not compared with each other: each has its own best child.
    assert logged.tags["best_child.dice"] == "task=distance,lr=2"
    assert logged.tags["best_child.voi"] == "task=affinities,lr=1"
    note = logged.tags["mlflow.note.content"]
    assert "task=distance,lr=2" in note and "voi: **task=affinities,lr=1** (0.3)" in note
