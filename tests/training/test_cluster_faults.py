"""Faults of a cluster job: the scheduler's signals to the whole job, a full disk.

Each test runs `train.py` in its own process group (as a batch job runs), with real
DataLoader workers, a real MLflow store and real files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.conftest import REPO, tiny_overrides
from tests.test_cli import runs

QUIET = [
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
    *QUIET,
]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _job(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    """`train.py args` in a session (process group) of its own, as a batch job runs."""
    return subprocess.Popen(
        [*TRAIN_PY, *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not list(root.glob(pattern)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"no {pattern} after {timeout}s"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_to_the_whole_job_kills_the_run_and_resume_finishes_it(
    signum: signal.Signals, tmp_path: Path
) -> None:
    """`scancel`/`timeout`: the signal reaches every process of the job, loader workers too."""
    args = ["validation_interval=5", "trainer.num_workers=2"]
    proc = _job(["iterations=100000", *args], tmp_path)
    _wait_for("outputs/runs/*/checkpoints/iteration_000005.ckpt", tmp_path, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2  # the loader's workers, in the job's process group
    assert {os.getpgid(w.pid) for w in workers} == {proc.pid}
    os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    name = signal.Signals(signum).name
    # One line, the last: no traceback, no "DataLoader worker ... killed by signal".
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"dacapo: run {re.escape(run.info.run_name)} \({run.info.run_id}\) stopped by {name} at "
        rf"iteration (\d+): MLflow status KILLED; last checkpoint (\S+); continue it with "
        rf"resume=true \(or resume={run.info.run_id}\)",
        line,
    )
    assert match, line
    stopped_at, last = int(match[1]), Path(match[2])
    assert last == Path(run.data.tags["run_dir"], "checkpoints", "last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at  # the current batch
    assert not list(last.parent.glob(".*.tmp"))  # written atomically
    for worker in workers:  # the workers left with the main process
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(worker.pid).wait(10)

    resumed = subprocess.run(
        [*TRAIN_PY, f"iterations={stopped_at + 3}", *args, "resume=true"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (after,) = runs(tmp_path)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["resume.1.from"] == f"{last} (iteration {stopped_at})"
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at + 3


def _in_tmpfs(folder: Path, size: int, script: str) -> list[str]:
    """`sh -c script`, run with a tmpfs of `size` bytes mounted on `folder` (a mount namespace).

    The tmpfs lives as long as the script: everything that needs its files runs in it.
    """
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a small file system needs root and mount namespaces")
    probe = ["unshare", "--mount", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", "/mnt"]
    if subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs in a mount namespace here")
    mount = f'mkdir -p "{folder}" && mount -t tmpfs -o size={size} tmpfs "{folder}" && '
    return ["unshare", "--mount", "sh", "-c", mount + script]


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_is_one_line_and_resume_finishes(tmp_path: Path) -> None:
    """A real file system that fills up: the run's third checkpoint finds no room."""
    sized = subprocess.run(
        [*TRAIN_PY, "iterations=1", "validation_interval=1", "run_name=sizing"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sized.returncode == 0, sized.stderr[-3000:]
    size = next((tmp_path / "outputs" / "runs").glob("*/checkpoints/last.ckpt")).stat().st_size
    # Room for iteration_000001.ckpt and last.ckpt, not for iteration_000002.ckpt as well;
    # then space is freed (the tmpfs grown) and the run resumed, all while it is mounted.
    out = tmp_path / "seen"
    out.mkdir()
    job = shlex.join([*TRAIN_PY, "iterations=2", "validation_interval=1", "run_name=cells"])
    steps = shlex.join(
        [sys.executable, "-c", STEPS, str(tmp_path / "outputs" / "runs"), str(out / "steps.json")]
    )
    script = (
        f"{job} 2> {out}/full.err; echo $? > {out}/full.rc; {steps}; "
        f"mount -o remount,size=64m {tmp_path}/outputs/runs; "
        f"{job} resume=true 2> {out}/resume.err; echo $? > {out}/resume.rc; {steps}.after"
    )
    subprocess.run(
        _in_tmpfs(tmp_path / "outputs" / "runs", int(2.5 * size), script),
        cwd=tmp_path,
        env=_env(tmp_path),
        timeout=600,
        check=True,
    )
    stderr = (out / "full.err").read_text()
    assert (out / "full.rc").read_text().strip() == "1", stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    failed = json.loads((out / "steps.json").read_text())
    (run,) = [r for r in runs(tmp_path) if r.info.run_name == "cells"]
    folder = Path(run.data.tags["run_dir"], "checkpoints")
    match = re.fullmatch(
        rf"dacapo: run cells \({run.info.run_id}\) failed at iteration 2: No space left on "
        rf"device: checkpoint (\S+) needs (\d+) bytes \(\S+ MiB\) in {folder}, (\d+) bytes "
        rf"\(\S+ MiB\) are free; the previous (?:checkpoint )?(\S+) is intact: MLflow status "
        rf"FAILED; after fixing it, continue the run with resume=true \(or "
        rf"resume={run.info.run_id}\)",
        stderr.strip().splitlines()[-1],
    )
    assert match, stderr.strip().splitlines()[-1]
    needed, free = int(match[2]), int(match[3])
    assert abs(needed - size) < 4096 and free < needed
    # The write that failed left nothing; what was there loads, at iteration 1.
    assert failed == {"iteration_000001.ckpt": 1, "last.ckpt": 1}, failed
    assert match[4] in failed

    resumed = (out / "resume.err").read_text()
    assert (out / "resume.rc").read_text().strip() == "0", resumed[-3000:]
    (after,) = [r for r in runs(tmp_path) if r.info.run_name == "cells"]
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    finished = json.loads((out / "steps.json.after").read_text())
    assert finished["last.ckpt"] == 2 and finished["iteration_000002.ckpt"] == 2


# Writes {file name: global step} of the checkpoint folders under argv[1] to argv[2]
# (a file that does not load, a left-over temporary one say, as -1).
STEPS = """
import json, sys, pathlib, torch
def step(path):
    try:
        return torch.load(path, weights_only=True)["global_step"]
    except Exception:
        return -1
found = {p.name: step(p) for p in pathlib.Path(sys.argv[1]).glob("*/checkpoints/*")}
pathlib.Path(sys.argv[2]).write_text(json.dumps(found))
"""


DDP = ["lightning.devices=2", "lightning.accelerator=cpu", "lightning.strategy=ddp"]


@pytest.mark.slow
def test_a_lost_ddp_rank_is_one_line_the_run_failed_and_resume_finishes(tmp_path: Path) -> None:
    """Rank 1 of a two-process CPU job killed with SIGKILL after the iteration-4 checkpoint."""
    args = [*DDP, "validation_interval=4"]
    proc = _job(["iterations=100000", *args], tmp_path)
    _wait_for("outputs/runs/*/checkpoints/iteration_000004.ckpt", tmp_path, proc)
    (rank_one,) = [
        p
        for p in psutil.Process(proc.pid).children()
        if "dacapo_hydra.training.rank" in " ".join(p.cmdline())
    ]
    rank_one.kill()
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=300)
    ended_in = time.monotonic() - killed
    assert proc.returncode == 1, stderr[-3000:]
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    line = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"dacapo: run {re.escape(run.info.run_name)} \({run.info.run_id}\) failed at "
        rf"iteration (\d+): DDP rank 1 \(pid {rank_one.pid}\) was killed by SIGKILL: MLflow "
        rf"status FAILED; after fixing it, continue the run with resume=true \(or "
        rf"resume={run.info.run_id}\)",
        line,
    )
    assert match, stderr[-3000:]
    assert ended_in < 60, ended_in  # found by the failed collective, not a 30-minute timeout

    resumed = subprocess.run(
        [*TRAIN_PY, "iterations=10", *args, "resume=true"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (after,) = runs(tmp_path)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    last = Path(after.data.tags["run_dir"], "checkpoints", "last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 10


@pytest.mark.slow
def test_sigterm_to_a_ddp_job_stops_every_rank_after_the_same_batch(tmp_path: Path) -> None:
    """`scancel` of a two-process DDP job with loader workers: no hang, one line, KILLED."""
    args = [*DDP, "validation_interval=4", "trainer.num_workers=1"]
    proc = _job(["iterations=100000", *args], tmp_path)
    _wait_for("outputs/runs/*/checkpoints/iteration_000004.ckpt", tmp_path, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    match = re.fullmatch(
        rf"dacapo: run {re.escape(run.info.run_name)} \({run.info.run_id}\) stopped by SIGTERM "
        rf"at iteration (\d+): MLflow status KILLED; last checkpoint (\S+); continue it with "
        rf"resume=true \(or resume={run.info.run_id}\)",
        stderr.strip().splitlines()[-1],
    )
    assert match, stderr[-3000:]
    stopped_at, last = int(match[1]), Path(match[2])
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at

    resumed = subprocess.run(
        [*TRAIN_PY, f"iterations={stopped_at + 2}", *args, "resume=true"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (after,) = runs(tmp_path)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at + 2
