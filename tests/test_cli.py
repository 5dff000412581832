"""`python train.py` as a user runs it: single runs, a -m sweep, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tiny_overrides


def run_train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def runs(tmp_path: Path) -> list:
    db = tmp_path / "outputs" / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("dacapo")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_train_py_runs_and_prints_a_summary(tmp_path: Path) -> None:
    proc = run_train(
        [*tiny_overrides("synthetic_2d"), "datasplit=synthetic_2d", "task=affinities"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("dacapo: run ")]
    assert len(summary) == 1
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_id in summary[0]
    assert "mlflow ui --backend-store-uri sqlite:///" in summary[0]
    assert run.data.tags["task"] == "affinities"
    assert run.data.tags["datasplit"] == "synthetic_2d"
    assert Path(run.data.tags["run_dir"], "checkpoints", "last.ckpt").is_file()


def test_sweep_gives_child_runs_under_one_parent(tmp_path: Path) -> None:
    args = [
        "-m",
        "task=distance,affinities",
        "architecture=unet_tiny,unet_small",
        "datasplit=synthetic_2d",
        *tiny_overrides("synthetic_2d"),
        "iterations=2",
        "validation_interval=1",
    ]
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    parents = [r for r in all_runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {(r.data.tags["task"], r.data.tags["architecture"]) for r in children} == {
        ("distance", "unet_tiny"),
        ("distance", "unet_small"),
        ("affinities", "unet_tiny"),
        ("affinities", "unet_small"),
    }
    assert all(r.info.status == "FINISHED" for r in children)


def test_parallel_sweep_shares_one_parent(tmp_path: Path) -> None:
    args = [
        "-m",
        "hydra/launcher=parallel",
        "task=distance,affinities",
        "datasplit=synthetic_2d",
        *tiny_overrides("synthetic_2d"),
        "iterations=2",
        "validation_interval=1",
    ]
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    (parent,) = [r for r in all_runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["task"] for r in children) == ["affinities", "distance"]
    assert all(r.info.status == "FINISHED" for r in [parent, *children])


@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ("task=distanse", "distanse"),
        ("trainer.batch_sise=2", "batch_sise"),
        ("datasplit.train.0.raw.container=/no/such/volume.zarr", "/no/such/volume.zarr"),
        ("architecture.input_shape=45", "input_shape"),
    ],
)
def test_bad_input_exits_with_a_message_and_no_run(
    override: str, culprit: str, tmp_path: Path
) -> None:
    proc = run_train(
        [*tiny_overrides("synthetic_2d"), "datasplit=synthetic_2d", override], tmp_path
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if culprit in line]
    assert errors, proc.stderr
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))
    assert runs(tmp_path) == []
