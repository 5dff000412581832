"""Faults of a blockwise job on a cluster: the scheduler's SIGTERM, a lost Dask worker, a full disk.

Each test runs `dacapo-predict` (or the labels passes) with two Dask workers in its own
process group, as a batch job runs, and compares the output with an uninterrupted run
of the same command, bit for bit.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import zarr

from dacapo_hydra.data.output import LEDGER_DIR
from dacapo_hydra.data.tools.synthetic import write_synthetic
from tests.inference.test_labels_faults import SCRIPT, em_prediction
from tests.training.test_cluster_faults import _in_tmpfs

PREDICT = [sys.executable, "-c", "from dacapo_hydra.cli import predict_main; predict_main()"]


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3D synthetic volume of 8 nm voxels, several prediction blocks large."""
    return write_synthetic(
        tmp_path_factory.mktemp("vol") / "vol.zarr", dims=3, shape=[56, 84, 84], offset=[0, 0, 0]
    )


def _predict(checkpoint: str, volume: Path, out: Path, *extra: str) -> list[str]:
    return [
        *PREDICT,
        "--checkpoint", checkpoint,
        "--input-shape", "44", "44", "44",
        "--input", str(volume), "validate/raw",
        "--output", str(out),
        "--workers", "2",
        *extra,
    ]  # fmt: skip


def _lines(stderr: str) -> list[str]:
    """stderr's lines, progress bars' carriage-return updates split apart."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip()]


def _done(ledger: Path) -> int:
    return ledger.stat().st_size // 8 if ledger.exists() else 0


def _wait_for_blocks(proc: subprocess.Popen, ledger: Path, blocks: int) -> None:
    deadline = time.time() + 300
    while _done(ledger) < blocks:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.02)


@dataclass
class Reference:
    """An uninterrupted `dacapo-predict --workers 2`: its output and number of blocks."""

    out: Path
    blocks: int


@pytest.fixture(scope="module")
def reference(trained_3d: str, volume: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    out = tmp_path_factory.mktemp("reference") / "reference.zarr"
    done = subprocess.run(_predict(trained_3d, volume, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    blocks = re.search(r": (\d+) of (\d+) blocks in ", done.stdout)
    assert blocks and blocks[1] == blocks[2] and int(blocks[2]) >= 8, done.stdout
    return Reference(out, int(blocks[2]))


def _same(out: Path, reference: Reference) -> None:
    got = zarr.open_group(str(out))["prediction/s0"][:]
    want = zarr.open_group(str(reference.out))["prediction/s0"][:]
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_sigterm_to_the_job_mid_predict_keeps_the_blocks_done_and_a_rerun_completes_it(
    trained_3d: str, volume: Path, reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "out.zarr"
    ledger = out / LEDGER_DIR / "prediction" / "blocks.log"
    command = _predict(trained_3d, volume, out)
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_blocks(proc, ledger, 3)
    os.killpg(proc.pid, signal.SIGTERM)  # the driver and its Dask workers, as SLURM does
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    print(f"ended {time.monotonic() - started:.1f}s after SIGTERM")
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    ours = [line for line in _lines(stderr) if line.startswith("dacapo-predict:")]
    assert ours == [
        f"dacapo-predict: stopped by SIGTERM: the blocks done are kept in {out}: run the same "
        "command again to do the rest"
    ], stderr[-3000:]
    done = _done(ledger)
    assert 3 <= done < reference.blocks
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f": {reference.blocks - done} of {reference.blocks} blocks in " in rerun.stdout
    _same(out, reference)


def _dask_workers(driver: int) -> list[psutil.Process]:
    """The LocalCluster's worker processes: the driver's `multiprocessing` spawned children."""
    children = psutil.Process(driver).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


@pytest.mark.slow
def test_a_dask_worker_killed_mid_predict_is_replaced_and_the_output_is_identical(
    trained_3d: str, volume: Path, reference: Reference, tmp_path: Path
) -> None:
    out = tmp_path / "out.zarr"
    ledger = out / LEDGER_DIR / "prediction" / "blocks.log"
    proc = subprocess.Popen(
        _predict(trained_3d, volume, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_blocks(proc, ledger, 2)
    (victim, *_) = _dask_workers(proc.pid)
    victim.kill()  # SIGKILL, as the OOM killer sends it, in the middle of its blocks
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert f": {reference.blocks} of {reference.blocks} blocks in " in stdout, stdout
    assert not victim.is_running()
    _same(out, reference)


# The labels passes on two Dask workers, under a main guard: the workers are spawned and
# import the main module.
LABELS_ON_DASK = (
    "def main():\n"
    + "".join(f"    {line}\n" for line in SCRIPT.strip().splitlines()).replace(
        "Execution(progress=False)", "Execution(workers=2, progress=False)"
    )
    + "\n\nif __name__ == '__main__':\n    main()\n"
)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_labels_is_replaced_and_the_labels_are_identical(
    tmp_path: Path,
) -> None:
    em_prediction(tmp_path / "pred.zarr", (24, 48, 48), 8)
    script = tmp_path / "labels.py"
    script.write_text(LABELS_ON_DASK)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def run(out: Path) -> subprocess.Popen:
        command = [sys.executable, str(script), str(tmp_path / "pred.zarr"), str(out), "mutex"]
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    whole = run(tmp_path / "whole.zarr")
    assert whole.wait(600) == 0, whole.stderr.read()[-3000:]
    out = tmp_path / "killed.zarr"
    job = run(out)
    manifests = out / LEDGER_DIR / "labels" / "graph" / "_parts" / "fragments"
    deadline = time.time() + 300
    while not (manifests.exists() and any(manifests.glob("*.json"))):
        assert job.poll() is None and time.time() < deadline, job.stderr.read()[-3000:]
        time.sleep(0.01)
    (victim, *_) = _dask_workers(job.pid)
    victim.kill()
    _, stderr = job.communicate(timeout=600)
    assert job.returncode == 0, stderr[-3000:]
    want = zarr.open_group(str(tmp_path / "whole.zarr"))["labels/s0"][:]
    got = zarr.open_group(str(out))["labels/s0"][:]
    assert want.max() > 10
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_a_full_output_disk_is_one_line_and_a_rerun_with_room_completes_it(
    trained_3d: str, volume: Path, reference: Reference, tmp_path: Path
) -> None:
    """A real (tmpfs) file system holding half the prediction, then grown."""
    size = sum(f.stat().st_size for f in reference.out.rglob("*") if f.is_file())
    disk = tmp_path / "disk"
    out = disk / "out.zarr"
    seen = tmp_path / "seen"
    seen.mkdir()
    command = shlex.join(_predict(str(trained_3d), volume, out))
    script = (
        f"{command} > {seen}/full.out 2> {seen}/full.err; echo $? > {seen}/full.rc; "
        f"cp {out}/{LEDGER_DIR}/prediction/blocks.log {seen}/blocks.log; "
        f"mount -o remount,size=64m {disk}; "
        f"{command} > {seen}/rerun.out 2> {seen}/rerun.err; echo $? > {seen}/rerun.rc; "
        f"cp -r {out} {seen}/out.zarr"
    )
    subprocess.run(_in_tmpfs(disk, size // 2, script), timeout=900, check=True)
    stderr = (seen / "full.err").read_text()
    assert (seen / "full.rc").read_text().strip() == "1", stderr[-3000:]
    ours = [line for line in _lines(stderr) if line.startswith("dacapo-predict:")]
    assert len(ours) == 1, stderr[-3000:]
    assert re.fullmatch(
        rf"dacapo-predict: error: No space left on device( writing \S+)?: the output {out} "
        rf"\(on the file system of {out}\) has \d+ bytes \(\S+ MiB\) free; the blocks done are "
        "kept: free space and run the same command again to do the rest",
        ours[0],
    ), ours[0]
    done = _done(seen / "blocks.log")
    assert 0 < done < reference.blocks
    assert (seen / "rerun.rc").read_text().strip() == "0", (seen / "rerun.err").read_text()
    assert (
        f": {reference.blocks - done} of {reference.blocks} blocks in "
        in (seen / "rerun.out").read_text()
    )
    _same(seen / "out.zarr", reference)
    # Besides the progress bar, the command's one line is all: no worker's log of the
    # failed task, no nanny's shutdown, no traceback.
    said = [line for line in _lines(stderr) if not line.startswith("predict:")]
    assert said == ours, stderr[-3000:]
