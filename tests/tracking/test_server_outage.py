"""A tracking server that goes away mid-run: training goes on, and nothing is lost.

A real `mlflow server` (sqlite behind it) that the test stops while a run trains:
restarted on the same port, what the run logged meanwhile is sent and the run
finishes; never restarted, the run still finishes, its folder holds what was not
sent, and `dacapo-sync` sends it once the server is back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dacapo_hydra.tracking.pending import OFFLINE_DIR, QUEUE_FILE, RETRY_S
from dacapo_hydra.training.process.launch import free_port
from tests.conftest import REPO, tiny_overrides

ITERATIONS = 120
TRAIN_PY = [
    sys.executable,
    str(REPO / "train.py"),
    *tiny_overrides("synthetic_2d"),
    "datasplit=synthetic_2d",
    "trainer=fast",
    f"iterations={ITERATIONS}",
    "validation_interval=40",
    "snapshot_interval=0",
    "write_validation=false",
    "lightning.log_every_n_steps=1",
    "lightning.enable_progress_bar=false",
    "run_name=outage",
]


class Server:
    """`mlflow server` on a fixed port and store, stopped and started again by the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        with open(self.folder / "server.log", "a") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.time() + 180
        while True:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:
                MlflowClient(self.uri).search_experiments(max_results=1)
                return
            except Exception:
                assert time.time() < deadline, (self.folder / "server.log").read_text()[-3000:]
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    made = Server(tmp_path)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # the test's own client
    made.start()
    try:
        yield made
    finally:
        made.stop()
        os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)


def _train(tmp_path: Path, server: Server) -> tuple[subprocess.Popen, Path, Path]:
    """The run, started in its own process group; (process, stdout file, stderr file)."""
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
    out, err = tmp_path / "train.out", tmp_path / "train.err"
    proc = subprocess.Popen(
        [*TRAIN_PY, f"mlflow.tracking_uri={server.uri}"],
        cwd=tmp_path,
        env=env,
        stdout=open(out, "w"),  # noqa: SIM115 - the child holds it
        stderr=open(err, "w"),  # noqa: SIM115
        start_new_session=True,
    )
    return proc, out, err


def _wait_for_metrics(server: Server, proc: subprocess.Popen, err: Path) -> str:
    """The run's id, once the server holds some of its losses."""
    client = MlflowClient(server.uri)
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, err.read_text()[-3000:]
        found = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string="attributes.run_name = 'outage'",
        )
        if found and len(client.get_metric_history(found[0].info.run_id, "train/loss")) >= 3:
            return found[0].info.run_id
        time.sleep(0.2)
    raise AssertionError("no losses logged")


def _ours(err: Path) -> list[str]:
    """The run's own lines on stderr (libraries' deprecation warnings aside)."""
    text = err.read_text()
    assert "Retrying" not in text and "Traceback" not in text, text[-3000:]
    return [line for line in text.splitlines() if line.startswith("dacapo")]


def _assert_complete(server: Server, run_id: str) -> None:
    """The run FINISHED, with every loss, every validation and its checkpoints."""
    client = MlflowClient(server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(ITERATIONS)), steps
    validations = client.get_metric_history(run_id, "val/loss")  # Lightning's steps: 0-based
    assert sorted(m.step for m in validations) == [39, 79, 119]
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "checkpoints")}
    assert "last.ckpt" in logged, logged
    assert "config.yaml" in {a.path for a in client.list_artifacts(run_id)}


@pytest.mark.slow
def test_a_server_away_mid_run_gets_everything_when_it_is_back(
    tmp_path: Path, server: Server
) -> None:
    proc, out, err = _train(tmp_path, server)
    run_id = _wait_for_metrics(server, proc, err)
    server.stop()
    # Away for longer than MLflow's retries and the run's own retry interval.
    deadline = time.time() + 120
    while "is unreachable" not in err.read_text() and time.time() < deadline:
        assert proc.poll() is None, err.read_text()[-3000:]
        time.sleep(0.2)
    # Training goes on, its writes queued; paused once a few are, so that it is still
    # training when the server is back however fast the machine (120 iterations take
    # 13 s on 2 quiet cores).
    queue = _run_dir(tmp_path) / OFFLINE_DIR / QUEUE_FILE
    deadline = time.time() + 120
    while not (queue.exists() and len(queue.read_text().splitlines()) >= 3):
        assert proc.poll() is None, "the run ended before it queued 3 writes"
        assert time.time() < deadline, err.read_text()[-3000:]
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the server came back: make it longer"
    # The server takes its time to start on a busy machine: the run waits meanwhile
    # (a run that ends first sends its queue at its end too, but would not show this).
    os.killpg(proc.pid, signal.SIGSTOP)
    paused = time.monotonic()
    try:
        server.start()
        # The run's next write asks the server again once RETRY_S have passed.
        time.sleep(max(0.0, RETRY_S - (time.monotonic() - paused)))
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert proc.wait(600) == 0, err.read_text()[-3000:]
    warning, back = _ours(err)
    assert warning.startswith(
        f"dacapo: warning: the MLflow tracking server {server.uri} is unreachable ("
    ), warning
    assert warning.endswith(f"(or with: dacapo-sync --run-dir {_run_dir(tmp_path)})"), warning
    assert re.fullmatch(
        rf"dacapo: the MLflow tracking server {re.escape(server.uri)} is back after \d+ s: "
        rf"sent the \d+ writes run {run_id} kept meanwhile",
        back,
    ), back
    assert "dacapo-sync" not in out.read_text()
    _assert_complete(server, run_id)
    assert not (_run_dir(tmp_path) / OFFLINE_DIR / QUEUE_FILE).exists()


def _run_dir(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    return folder


@pytest.mark.slow
def test_a_server_that_never_comes_back_leaves_the_rest_to_dacapo_sync(
    tmp_path: Path, server: Server
) -> None:
    proc, out, err = _train(tmp_path, server)
    run_id = _wait_for_metrics(server, proc, err)
    server.stop()
    assert proc.wait(600) == 0, err.read_text()[-3000:]
    (warning,) = _ours(err)
    assert warning.startswith(f"dacapo: warning: the MLflow tracking server {server.uri} is ")
    run_dir = _run_dir(tmp_path)
    queue = run_dir / OFFLINE_DIR / QUEUE_FILE
    assert queue.exists()
    summary = out.read_text().strip().splitlines()[-1]
    assert summary.startswith(f"dacapo: run outage ({run_id}) finished {ITERATIONS} iterations")
    assert re.search(
        rf"; the MLflow tracking server {re.escape(server.uri)} is away: \d+ writes \(the run's "
        rf"end included\) wait in {run_dir / OFFLINE_DIR}: send them with dacapo-sync --run-dir "
        rf"{run_dir}$",
        summary,
    ), summary

    sync = [sys.executable, "-c", "from dacapo_hydra.cli import sync_main; sync_main()"]
    dead = subprocess.run([*sync, "--run-dir", str(run_dir)], capture_output=True, text=True)
    assert dead.returncode == 2, dead.stderr
    (line,) = dead.stderr.strip().splitlines()
    assert line.startswith(f"dacapo-sync: error: the MLflow tracking server {server.uri} is ")

    server.start()
    assert MlflowClient(server.uri).get_run(run_id).info.status == "RUNNING"
    started = time.monotonic()
    sent = subprocess.run([*sync, "--run-dir", str(run_dir)], capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert sent.stderr.strip() == ""
    assert re.fullmatch(
        rf"dacapo-sync: sent \d+ writes of run {run_id} to {re.escape(server.uri)}: "
        rf"MLflow status FINISHED",
        sent.stdout.strip(),
    ), sent.stdout
    print(f"dacapo-sync took {time.monotonic() - started:.1f}s")
    _assert_complete(server, run_id)
    assert not queue.exists()
    models = MlflowClient(server.uri).search_logged_models(
        [MlflowClient(server.uri).get_run(run_id).info.experiment_id]
    )
    assert any(m.source_run_id == run_id for m in models)
    again = subprocess.run([*sync, "--run-dir", str(run_dir)], capture_output=True, text=True)
    assert again.returncode == 0 and " sent 0 writes " in again.stdout, again.stdout
