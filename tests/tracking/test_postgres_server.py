"""Many writers on one MLflow server backed by a real PostgreSQL, as on a cluster.

The test starts its own PostgreSQL (the distribution's `postgres`, `initdb` in a
temporary folder, on a free port of 127.0.0.1), then `mlflow server
--backend-store-uri postgresql://...` as the README's recipe says (with the `postgres`
extra's driver), then several trainings and a `-m` sweep at once against it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dacapo_hydra.training.process.launch import free_port
from tests.conftest import REPO, tiny_overrides

JOBS = 4
QUICK = [
    *tiny_overrides("synthetic_2d"),
    "datasplit=synthetic_2d",
    "trainer=fast",
    "iterations=3",
    "validation_interval=3",
    "snapshot_interval=0",
    "write_validation=false",
    "lightning.enable_progress_bar=false",
]
DB_ERRORS = ("database is locked", "UniqueViolation", "duplicate key", "deadlock", "Traceback")


def _postgres_bin() -> Path:
    """The folder of the distribution's PostgreSQL programs (initdb, pg_ctl, createdb)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    on_path = shutil.which("initdb")
    if found:
        return Path(found[0]).parent
    if on_path is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs the distribution's package)")
    return Path(on_path).resolve().parent


def _as_owner(command: list[str], folder: Path) -> list[str]:
    """`command`, run as the owner of `folder` (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of this test's own; yields `postgresql://dacapo@127.0.0.1:<port>`."""
    pytest.importorskip("psycopg", reason="the postgres extra: pip install -e '.[postgres]'")
    bin_dir = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="dacapo-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run(_as_owner(list(command), folder), capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "dacapo", "--auth=trust")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        )
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dacapo", "mlflow")
        yield f"postgresql://dacapo@127.0.0.1:{port}/mlflow"
    finally:
        with contextlib.suppress(Exception):
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server(postgres: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`mlflow server` on that database; yields (its URI, its log file)."""
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                postgres,
                "--artifacts-destination",
                str(tmp_path / "server-artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                MlflowClient(uri).search_experiments()
                break
            except Exception:
                assert time.time() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        yield uri, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.mark.slow
def test_jobs_and_a_sweep_at_once_on_a_postgresql_backed_server(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    uri, log = server
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    commands = [[*QUICK, f"seed={seed}", f"mlflow.tracking_uri={uri}"] for seed in range(JOBS)]
    commands.append(["-m", *QUICK, "seed=10,11", f"mlflow.tracking_uri={uri}"])
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    errors = [proc.communicate(timeout=900)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs), "\n".join(
        e[-2000:] for e in errors
    )
    for text in [*errors, log.read_text()]:
        assert not [e for e in DB_ERRORS if e in text], text[-3000:]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("dacapo")
    found = client.search_runs([experiment.experiment_id])
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    trainings = [r for r in found if r.data.tags.get("run_dir")]
    assert len(trainings) == JOBS + 2 and len(children) == 2
    assert sorted(r.info.status for r in found) == ["FINISHED"] * len(found)
    assert {r.data.params["seed"] for r in trainings} == {*map(str, range(JOBS)), "10", "11"}
    for run in trainings:
        # Every checkpoint logged to its own run: the server's copy is the job's file.
        logged = client.download_artifacts(
            run.info.run_id, "checkpoints/last.ckpt", str(tmp_path / run.info.run_id)
        )
        own = Path(run.data.tags["run_dir"], "checkpoints", "last.ckpt")
        assert Path(logged).read_bytes() == own.read_bytes()
