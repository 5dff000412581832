"""Training beyond one process: DDP from train.py and sweeps, ranks, launchers, stores, devices."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from dacapo_hydra import tracking
from dacapo_hydra.api import compose
from dacapo_hydra.config.lightning import trainer_arguments
from dacapo_hydra.devices import (
    cpus_per_device,
    loader_workers,
    parse_devices,
    worker_device,
)
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.process import distributed, launch
from dacapo_hydra.training.process.distributed import RankZeroFailed, World, plan
from tests.conftest import REPO, tiny_overrides

DDP = ["lightning.devices=2", "lightning.accelerator=cpu", "lightning.strategy=ddp"]


class RecordCrops(pl.Callback):
    """A configured callback: each rank appends a hash of every training crop to a file.

    Given as `+callbacks.crops._target_=tests.test_distributed.RecordCrops
    +callbacks.crops.folder=<dir>`: `<dir>/rank<r>.txt` lists rank r's crops.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        """Append one line per crop of the batch."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [hashlib.sha1(crop.numpy().tobytes()).hexdigest() for crop in batch["raw"]]
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as out:
            out.write("".join(f"{line}\n" for line in lines))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _train_py(
    args: list[str], tmp_path: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _runs(tmp_path: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dacapo")
    return client.search_runs([experiment.experiment_id]) if experiment else []


# Fast: how many processes, which rank, which crops, which GPU, which preset.


def test_plan_counts_processes_and_refuses_what_cannot_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    assert plan({"accelerator": "cpu", "devices": 1}).size == 1
    assert plan({"accelerator": "cpu", "devices": 2, "strategy": "single_device"}).size == 1
    world = plan({"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    assert (world.size, world.rank, world.origin, world.backend) == (2, 0, "dacapo", "gloo")
    # A rank this module started (or torchrun-like LOCAL_RANK): Lightning's variables say which.
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = plan({"accelerator": "cpu", "devices": 2, "strategy": "auto"})
    assert (world.rank, world.local_rank, world.origin) == (1, 1, "lightning")
    monkeypatch.delenv("LOCAL_RANK")
    # SLURM started the tasks (srun): Lightning's SLURMEnvironment gives the rank.
    for key, value in {
        "SLURM_NTASKS": "4",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NAME": "dacapo-train",
        "SLURM_NNODES": "2",
    }.items():
        monkeypatch.setenv(key, value)
    world = plan({"accelerator": "cpu", "devices": 2, "num_nodes": 2, "strategy": "ddp"})
    assert (world.size, world.rank, world.local_rank, world.origin) == (4, 3, 1, "slurm")
    monkeypatch.delenv("SLURM_NTASKS")
    with pytest.raises(ConfigError, match=r"^lightning.strategy=ddp_spawn: .* use ddp"):
        plan({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    with pytest.raises(ConfigError, match=r"^lightning.num_nodes=2: .*slurm_gpu"):
        plan({"accelerator": "cpu", "devices": 2, "num_nodes": 2})
    if not torch.cuda.is_available():  # refused before any process starts
        with pytest.raises(ConfigError, match=r"^lightning.devices=2: "):
            plan({"accelerator": "gpu", "devices": 2})


def test_rank_zero_shares_results_and_errors_without_a_timeout() -> None:
    """Two ranks on a real TCPStore (threads): rank 1 waits past the store's timeout."""
    timeout = timedelta(seconds=1)
    server = dist.TCPStore("127.0.0.1", 0, 2, True, timeout=timeout, wait_for_workers=False)
    client = dist.TCPStore("127.0.0.1", server.port, 2, False, timeout=timeout)
    zero, one = World(size=2, rank=0, store=server), World(size=2, rank=1, store=client)
    seen: dict[str, object] = {}

    def rank_one() -> None:
        seen["value"] = one.from_rank_zero("validation", lambda: "rank 1 never computes")
        for name in ("config", "crash"):
            try:
                one.from_rank_zero(name, lambda: None)
            except (ConfigError, RankZeroFailed) as err:
                seen[name] = (type(err).__name__, str(err))

    def bad_input() -> None:
        raise ConfigError("trainer.batch_size: bad")

    thread = threading.Thread(target=rank_one)
    thread.start()
    time.sleep(1.5)  # longer than the store's timeout: a collective would have failed
    assert zero.from_rank_zero("validation", lambda: {"score": 0.5}) == {"score": 0.5}
    with pytest.raises(ConfigError):
        zero.from_rank_zero("config", bad_input)
    with pytest.raises(ZeroDivisionError):
        zero.from_rank_zero("crash", lambda: 1 / 0)
    thread.join(10)
    # Bad input is reported as such (rank 0 prints it; the others end quietly), any other
    # failure of rank 0 ends the others with its message.
    assert seen == {
        "value": {"score": 0.5},
        "config": ("ConfigError", "trainer.batch_size: bad"),
        "crash": ("RankZeroFailed", "rank 0 failed: ZeroDivisionError: division by zero"),
    }


def test_each_rank_and_worker_draws_its_own_crops(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    from dacapo_hydra.training.build import build

    crops = build(compose_tiny("synthetic_2d", trainer="fast")).datamodule.train_data

    def first(rank: int) -> np.ndarray:
        crops.rank = rank
        return next(iter(crops))["raw"].numpy()

    rank0, rank1, again = first(0), first(1), first(0)
    np.testing.assert_array_equal(rank0, again)  # reproducible per rank
    assert not np.array_equal(rank0, rank1)
    # Rank 0 keeps a one-process run's streams; every (rank, worker) pair is distinct.
    assert crops.entropy(0) == [crops.seed, 0]
    crops.rank = 1
    assert crops.entropy(1) == [crops.seed, 1, 1]
    streams = set()
    for rank in range(3):
        crops.rank = rank
        streams |= {tuple(crops.entropy(worker)) for worker in range(3)}
    assert len(streams) == 9


def test_loader_workers_and_precision_follow_the_machine(
    compose_tiny: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert cpus_per_device(1) == cpus and cpus_per_device(2) == max(1, cpus // 2)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "12")
    assert cpus_per_device(4, slurm_per_task=True) == 12  # SLURM gave each task its own
    assert cpus_per_device(1, slurm_per_task=False) == cpus
    assert [loader_workers("auto", c) for c in (1, 2, 9, 64)] == [0, 1, 8, 8]
    with pytest.raises(ConfigError, match=r"^trainer.num_workers='many'"):
        loader_workers("many", 4)
    arguments = trainer_arguments(compose_tiny())
    expected = (
        "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    )
    assert arguments["precision"] == expected
    cfg = compose_tiny(overrides=["lightning.precision=16-mixed", "lightning.accelerator=cpu"])
    assert trainer_arguments(cfg)["precision"] == "16-mixed"


def test_dask_workers_get_gpus_round_robin() -> None:
    assert [worker_device(i, ["0", "1"]) for i in range(5)] == ["0", "1", "0", "1", "0"]
    assert parse_devices("0, 1,GPU-8f3c2a1e-aaaa-bbbb-cccc-0123456789ab") == [
        "0",
        "1",
        "GPU-8f3c2a1e-aaaa-bbbb-cccc-0123456789ab",
    ]
    with pytest.raises(ConfigError, match=r"^--devices 'cuda:0': expected GPU indices"):
        parse_devices("cuda:0")


def test_launcher_presets_compose() -> None:
    cfg = compose(
        overrides=[
            "hydra/launcher=slurm_gpu",
            "lightning.devices=4",
            "lightning.num_nodes=2",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.mem_gb=128",
            "hydra.launcher.timeout_min=60",
        ],
        return_hydra=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert (launcher.partition, launcher.mem_gb, launcher.timeout_min) == ("gpu", 128, 60)
    assert launcher.max_num_timeout > 0  # timed-out jobs are requeued, and resume
    cpu = compose(overrides=["hydra/launcher=slurm_cpu", "lightning.devices=3"], return_hydra=True)
    assert cpu.hydra.launcher.tasks_per_node == 3 and cpu.hydra.launcher.gpus_per_node is None
    local = compose(overrides=["hydra/launcher=local"], return_hydra=True).hydra.launcher
    assert local._target_.endswith("submitit_launcher.LocalLauncher")
    assert local.tasks_per_node == 1  # the job starts its DDP ranks itself


def test_a_tracking_server_uri_reaches_the_store_functions_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = "http://mlflow.example.org:5000"
    cfg = compose(overrides=[f"mlflow.tracking_uri={uri}", f"paths.output_dir={tmp_path}/out"])
    assert tracking.resolve_store(cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location) == (
        uri,
        None,  # the server chooses where artifacts go
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.find_store() == uri
    assert compose().mlflow.tracking_uri == uri  # the environment sets training's store too
    assert list(tmp_path.iterdir()) == []  # nothing created


# Slow: real processes.


@pytest.mark.slow
def test_ddp_on_two_processes_trains_one_run(tmp_path: Path) -> None:
    crops = tmp_path / "crops"
    args = [
        *tiny_overrides("synthetic_2d"),
        "datasplit=synthetic_2d",
        *DDP,
        "trainer.batch_size=2",
        "+callbacks.crops._target_=tests.test_distributed.RecordCrops",
        f"+callbacks.crops.folder={crops}",
    ]
    proc = _train_py(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len([line for line in proc.stdout.splitlines() if line.startswith("dacapo: run ")]) == 1
    (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2"
    assert run.data.params["effective_batch_size"] == "4"  # 2 crops x 2 processes x 1 x 1
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    logged = [Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    checkpoints = Path(run.data.tags["run_dir"]) / "checkpoints"
    assert sorted(logged) == sorted(p.name for p in checkpoints.iterdir())
    assert {"last.ckpt", f"best_{run.data.tags['criterion']}.ckpt"} <= set(logged)
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4
    assert client.get_metric_history(run.info.run_id, "validation/dice")  # rank 0 validated
    assert list((tmp_path / "outputs" / "runs").iterdir()) == [checkpoints.parent]
    # Each rank trained on its own crops: 4 iterations x 2 crops each, none shared.
    rank0 = (crops / "rank0.txt").read_text().split()
    rank1 = (crops / "rank1.txt").read_text().split()
    assert len(rank0) == len(rank1) == 8
    assert not set(rank0) & set(rank1)


@pytest.mark.slow
def test_ddp_from_the_python_api_leaves_the_process_as_it_was(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    from dacapo_hydra.training.run import train

    threads = torch.get_num_threads()
    result = train(compose_tiny("synthetic_2d", trainer="fast", overrides=DDP))
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    assert result.iterations == 4 and Path(result.checkpoint).is_file()
    # The next run in this process (a sweep's next job) starts afresh.
    assert not dist.is_initialized() and distributed.current() is None
    assert "LOCAL_RANK" not in os.environ and "WORLD_SIZE" not in os.environ
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_ranks_started_by_slurm_train_one_run(tmp_path: Path) -> None:
    """Two tasks started as srun starts them (SLURM_* variables): Lightning's SLURMEnvironment."""
    run_dir = tmp_path / "outputs" / "multirun" / "sweep" / "0"  # a submitit job's folder
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "dacapo-train",
        "SLURM_NODELIST": "localhost",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(launch.free_port()),
    }
    args = [*tiny_overrides("synthetic_2d"), "datasplit=synthetic_2d", *DDP]
    tasks = [
        subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=_env(tmp_path, **slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [task.communicate(timeout=600) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][1][-3000:]
    summaries = [
        [line for line in out.splitlines() if line.startswith("dacapo: run ")] for out, _ in outputs
    ]
    assert [len(lines) for lines in summaries] == [1, 0]  # rank 0 reports
    (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    assert Path(run.data.tags["run_dir"]) == run_dir.resolve()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_sweep_runs_each_job_on_its_processes(tmp_path: Path) -> None:
    args = ["-m", "seed=0,1", "datasplit=synthetic_2d", *tiny_overrides("synthetic_2d"), *DDP]
    proc = _train_py([*args, "iterations=2", "validation_interval=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["seed=0", "seed=1"]
    assert len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.params["world_size"] == "2" for r in children)


@pytest.mark.slow
def test_submitit_local_sweep_gives_children_of_one_parent(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    args = [
        "-m",
        "hydra/launcher=submitit_local",
        "task=distance,affinities",
        "datasplit=synthetic_2d",
        *tiny_overrides("synthetic_2d"),
        "iterations=2",
        "validation_interval=2",
    ]
    proc = _train_py(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["task"] for r in children) == ["affinities", "distance"]
    assert sorted(r.info.run_name for r in children) == ["affinities", "distance"]
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    assert parent.data.tags["best_child"] in {r.info.run_id for r in children}
    # The jobs ran in submitit's processes, with their logs in the sweep folder.
    assert list(Path(parent.data.tags["dacapo.sweep_dir"]).glob(".submitit/*/*_log.out"))


@pytest.mark.slow
def test_a_killed_ddp_run_continues_when_its_job_is_requeued(tmp_path: Path) -> None:
    """kill -9 of every rank, then the job again as SLURM requeues it: the same MLflow run."""
    run_dir = tmp_path / "outputs" / "runs" / "job"
    args = [
        *tiny_overrides("synthetic_2d"),
        "datasplit=synthetic_2d",
        "trainer=fast",
        *DDP,
        "snapshot_interval=0",
        f"hydra.run.dir={run_dir}",
    ]
    first = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args, "iterations=400", "validation_interval=5"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while (
        time.time() < deadline and not (run_dir / "checkpoints" / "iteration_000005.ckpt").exists()
    ):
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 5 <= killed_at < 400
    (run,) = _runs(tmp_path)
    assert run.info.status == "RUNNING"
    again = _train_py(
        [*args, "iterations=15", "validation_interval=5"], tmp_path, SLURM_RESTART_COUNT="1"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    (resumed,) = _runs(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 15


@pytest.mark.slow
def test_training_against_an_mlflow_server(tmp_path: Path) -> None:
    """A real `mlflow server` (sqlite behind it, as postgresql on a cluster): 2 iterations."""
    port = launch.free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                MlflowClient(uri).search_experiments()
                break
            except Exception:
                time.sleep(1)
        args = [
            *tiny_overrides("synthetic_2d"),
            "datasplit=synthetic_2d",
            "iterations=2",
            "validation_interval=2",
            f"mlflow.tracking_uri={uri}",
        ]
        proc = _train_py(args, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("dacapo").experiment_id])
        assert run.info.status == "FINISHED"
        logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoints")}
        assert "last.ckpt" in logged
        assert list((tmp_path / "server-artifacts").rglob("last.ckpt"))  # the server stored it
        assert not (tmp_path / "outputs" / "mlflow.db").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


@pytest.mark.slow
def test_each_dask_worker_sees_its_gpu() -> None:
    from dask.distributed import Client

    from dacapo_hydra.devices import device_cluster

    with device_cluster(3, ["0", "1"]) as cluster, Client(cluster) as client:
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        names = {
            info["name"]: address for address, info in client.scheduler_info()["workers"].items()
        }
    assert sorted(seen.values()) == ["0", "0", "1"]
    assert {name: seen[address] for name, address in names.items()} == {0: "0", 1: "1", 2: "0"}


def test_devices_go_with_a_local_cluster_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dacapo_hydra.cli import predict_main

    args = ["--checkpoint", str(tmp_path / "m.ckpt"), "--input", "v.zarr", "raw"]
    for extra, message in [
        (["--devices", "0,1", "--scheduler", "tcp://10.0.0.5:8786"], "devices ['0', '1'] start a"),
        (["--devices", "first"], "--devices 'first': expected GPU indices"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            predict_main([*args, "--output", str(tmp_path / "out.zarr"), *extra])
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("dacapo-predict: error: ") and message in line
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.slow
def test_predict_on_gpu_workers_matches_one_process(trained_3d: str, tmp_path: Path) -> None:
    """`--devices 0,1`: two Dask workers, one (here absent) GPU each, the same prediction."""
    import zarr

    from dacapo_hydra.cli import predict_main
    from dacapo_hydra.data.tools.synthetic import write_synthetic
    from dacapo_hydra.inference.options import PredictOptions
    from dacapo_hydra.inference.predict import predict

    volume = write_synthetic(tmp_path / "vol.zarr", dims=3, shape=[40, 64, 64])
    out = tmp_path / "out.zarr"
    shape = ["--input-shape", "44", "44", "44"]
    options = PredictOptions(input_shape=(44, 44, 44))
    predict(trained_3d, volume, "validate/raw", out, "one", options=options)
    predict_main(
        ["--checkpoint", trained_3d, "--input", str(volume), "validate/raw", "--output", str(out)]
        + ["--prediction-dataset", "gpus", "--devices", "0,1", *shape]
    )
    group = zarr.open_group(str(out))
    np.testing.assert_allclose(group["gpus/s0"][:], group["one/s0"][:], atol=1e-6)
