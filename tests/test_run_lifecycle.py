"""A run's life: jobs started together, full disks, signals, resuming with other settings.

Each test runs real trainings (in process, or `train.py` in subprocesses for the
slow tier) with real MLflow stores and real files.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from dacapo_hydra import tracking
from dacapo_hydra.api import compose
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.process.stops import RunFailed
from dacapo_hydra.training.run import train
from tests.conftest import REPO, tiny_overrides
from tests.test_cli import runs

# The quickest run that still checkpoints: 2 iterations, a checkpoint after each,
# no validation pass, snapshots or progress bar.
QUICK = [
    "iterations=2",
    "validation_interval=1",
    "snapshot_interval=0",
    "write_validation=false",
    "lightning.limit_val_batches=0",
    "lightning.enable_progress_bar=false",
]
TRAIN_PY = [
    sys.executable,
    str(REPO / "train.py"),
    *tiny_overrides("synthetic_2d"),
    "datasplit=synthetic_2d",
    "trainer=fast",
    *QUICK,
]


def _client(cfg: DictConfig) -> MlflowClient:
    return MlflowClient(f"sqlite:///{Path(cfg.paths.output_dir).resolve() / 'mlflow.db'}")


def _only_run(cfg: DictConfig) -> Any:
    client = _client(cfg)
    (run,) = client.search_runs([client.get_experiment_by_name("dacapo").experiment_id])
    return run


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _open_store(uri: str, artifacts: str, barrier: Any) -> None:
    barrier.wait()  # all four at the same moment
    tracking.ensure_experiment(uri, "dacapo", artifacts)


@pytest.mark.slow
def test_jobs_creating_the_store_at_once_all_get_it(tmp_path: Path) -> None:
    # What a run does first with the store, by four processes released together on a
    # fresh folder: without the lock, some fail in MLflow's migrations.
    uri, artifacts = tracking.resolve_store(
        f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")
    )
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    jobs = [context.Process(target=_open_store, args=(uri, artifacts, barrier)) for _ in range(4)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=300)
    assert [job.exitcode for job in jobs] == [0] * 4
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["dacapo", "Default"]


def test_runs_started_in_the_same_second_get_their_own_folders() -> None:
    folders = [compose(return_hydra=True).hydra for _ in range(2)]
    runs_, sweeps = [str(f.run.dir) for f in folders], [str(f.sweep.dir) for f in folders]
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{8}"
    assert all(re.fullmatch(rf".*/runs/{stamp}", folder) for folder in runs_), runs_
    assert all(re.fullmatch(rf".*/multirun/{stamp}", folder) for folder in sweeps), sweeps
    assert runs_[0] != runs_[1] and sweeps[0] != sweeps[1]


@pytest.mark.slow
def test_four_jobs_started_at_once_on_a_fresh_folder(tmp_path: Path) -> None:
    # Four jobs on a fresh folder: one creates the MLflow store while the others wait
    # (no alembic race), and each writes to a folder of its own.
    procs = [
        subprocess.Popen(
            [*TRAIN_PY, f"seed={seed}"],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, "\n".join(e[-2000:] for e in errors)
    found = runs(tmp_path)
    assert sorted(r.info.status for r in found) == ["FINISHED"] * 4
    folders = {r.data.tags["run_dir"] for r in found}
    assert len(folders) == 4
    assert len(list((tmp_path / "outputs" / "runs").iterdir())) == 4
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    for run in found:
        # The last checkpoint logged to each run is the one its own job wrote.
        logged = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path="checkpoints/last.ckpt",
            tracking_uri=uri,
            dst_path=str(tmp_path / run.info.run_id),
        )
        own = Path(run.data.tags["run_dir"], "checkpoints", "last.ckpt")
        assert Path(logged).read_bytes() == own.read_bytes()
        config = torch.load(own, weights_only=True)["hyper_parameters"]["config"]
        assert str(config["seed"]) == run.data.params["seed"]


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_checkpoint_and_resume_skips_a_damaged_one(
    compose_tiny: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    full_disk = [
        "+callbacks.full_disk._target_=tests.conftest.FullDisk",
        "+callbacks.full_disk.at=2",
    ]
    cfg = compose_tiny(datasplit="synthetic_2d", trainer="fast", overrides=[*QUICK, *full_disk])
    with pytest.raises(RunFailed) as failed:
        train(cfg)
    run = _only_run(cfg)
    assert run.info.status == "FAILED"
    folder = Path(run.data.tags["run_dir"], "checkpoints")
    (line,) = str(failed.value).splitlines()
    assert line.startswith(f"run {run.info.run_name} ({run.info.run_id}) failed at iteration 2: ")
    assert "File too large (the file-size limit, ulimit -f, is " in line
    assert f" in {folder}, " in line and "last.ckpt is intact" in line
    assert line.endswith(f"continue the run with resume=true (or resume={run.info.run_id})")
    # The write at iteration 2 failed midway: nothing of it is left, iteration 1's files load.
    assert sorted(p.name for p in folder.iterdir()) == ["iteration_000001.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 1

    # A checkpoint damaged some other way (an older version's truncated write, a
    # copy cut short) is skipped, with a warning naming it.
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])
    resumed = compose_tiny(
        datasplit="synthetic_2d", trainer="fast", overrides=[*QUICK, "resume=true"]
    )
    with caplog.at_level(logging.WARNING, logger="dacapo_hydra"):
        result = train(resumed)
    skipped = [r.getMessage() for r in caplog.records if "resume: skipped" in r.getMessage()]
    assert len(skipped) == 1 and str(folder / "last.ckpt") in skipped[0]
    assert result.run_id == run.info.run_id and result.iterations == 2
    tags = _only_run(cfg).data.tags
    assert tags["resume.1.from"] == f"{folder / 'iteration_000001.ckpt'} (iteration 1)"
    assert _only_run(cfg).info.status == "FINISHED"
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not list(root.glob(pattern)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"no {pattern} after {timeout}s"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_marks_the_run_killed_and_resume_continues(
    signum: signal.Signals, tmp_path: Path
) -> None:
    long_run = [*TRAIN_PY, "iterations=400", "validation_interval=5"]
    proc = subprocess.Popen(
        long_run,
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and the child would inherit
        # that: give it the default, as a terminal's Ctrl-C finds it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for("outputs/runs/*/checkpoints/iteration_000010.ckpt", tmp_path, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"dacapo: run {run.info.run_name} ({run.info.run_id}) stopped by ")
    assert line.endswith(f"continue it with resume=true (or resume={run.info.run_id})")
    stopped_at = int(line.split(" at iteration ")[1].split(":")[0])
    last = Path(run.data.tags["run_dir"], "checkpoints", "last.ckpt")
    saved = torch.load(last, weights_only=True)["global_step"]
    if signum == signal.SIGTERM:
        assert saved == stopped_at  # saved when the signal came: nothing to redo
    else:
        assert saved <= stopped_at and saved % 5 == 0  # the last periodic checkpoint

    # The newest intact checkpoint: last.ckpt, or a periodic one written just before the
    # signal while last.ckpt was not yet re-saved.
    written = {torch.load(p, weights_only=True)["global_step"] for p in last.parent.glob("*.ckpt")}
    target = stopped_at + 3
    resumed = subprocess.run(
        [*TRAIN_PY, f"iterations={target}", "validation_interval=5", "resume=true"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (after,) = runs(tmp_path)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    resumed_from = int(after.data.tags["resume.1.from"].rsplit("(iteration ", 1)[1].rstrip(")"))
    assert resumed_from >= saved and resumed_from in written | {saved}
    assert after.data.tags["resume.1.iterations"] == str(target)
    assert torch.load(last, weights_only=True)["global_step"] == target


@pytest.mark.slow
def test_resume_records_changed_settings_and_refuses_another_task(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    named = [*QUICK, "run_name=cells"]
    crash = ["+callbacks.crash._target_=tests.conftest.Crash", "+callbacks.crash.at=1"]
    cfg = compose_tiny(datasplit="synthetic_2d", trainer="fast", overrides=[*named, *crash])
    with pytest.raises(RuntimeError, match="crash at iteration 1"):
        train(cfg)
    client, run_id = _client(cfg), _only_run(cfg).info.run_id
    last = Path(_only_run(cfg).data.tags["run_dir"], "checkpoints", "last.ckpt")

    # Another task makes the checkpoint meaningless: refused before anything runs.
    other = compose_tiny(
        datasplit="synthetic_2d",
        task="affinities",
        trainer="fast",
        overrides=[*named, "resume=true"],
    )
    with pytest.raises(ConfigError) as refused:
        train(other)
    (message,) = str(refused.value).splitlines()
    assert message.startswith("resume: task._target_ is dacapo_hydra.tasks.affinities.")
    assert f"but {last} was trained with dacapo_hydra.tasks.distance." in message
    assert _only_run(cfg).info.status == "FAILED" and "resumes" not in _only_run(cfg).data.tags

    # Another learning rate is applied and recorded; the params keep the first value.
    resumed = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[*named, "resume=true", "trainer.optimizer.lr=1e-05"],
    )
    result = train(resumed)
    assert result.run_id == run_id and result.iterations == 2
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.optimizer.lr"] == "0.003"
    recorded = {k: v for k, v in run.data.tags.items() if k.startswith("resume.")}
    assert recorded == {
        "resume.1.from": f"{last} (iteration 1)",
        "resume.1.trainer.optimizer.lr": "1e-05",
        # The crash callback is gone:
        "resume.1.callbacks.crash._target_": "(absent)",
        "resume.1.callbacks.crash.at": "(absent)",
    }
    assert run.data.tags["resumes"] == "1"
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="config.resume-1.yaml", tracking_uri=result.tracking_uri
    )
    assert yaml.safe_load(Path(local).read_text())["trainer"]["optimizer"]["lr"] == 1e-05
    # The optimiser went on at the new rate (Lightning had restored the old one).
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-05)


def _read_only(folder: Path, command: list[str]) -> list[str]:
    """`command`, run so that `folder` is read-only for it.

    Root may write anywhere whatever the mode: the command then runs in a mount
    namespace of its own where the folder is bind-mounted read-only.
    """
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    if not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "true"]).returncode:
        pytest.skip("running as root without mount namespaces: no read-only folder to be had")
    remount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", remount, str(folder), *command]


@pytest.mark.slow
def test_a_read_only_output_folder_fails_in_one_line(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    proc = subprocess.run(
        _read_only(outputs, TRAIN_PY),
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"dacapo-train: error: cannot create the run folder {outputs}/runs/")
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert f": {reason} in {outputs}; give a writable folder" in line
    assert list(outputs.iterdir()) == []
