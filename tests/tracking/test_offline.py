"""The queue of writes a run keeps while its tracking server is away, sent in order.

Against a real sqlite store (the slow tests in `test_server_outage.py` use a real
`mlflow server` that they stop and start).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from dacapo_hydra.tracking.pending import (
    Queue,
    batch_record,
    is_unreachable,
    replay_records,
)
from dacapo_hydra.training.process.launch import free_port

SYNC = [sys.executable, "-c", "from dacapo_hydra.cli import sync_main; sync_main()"]


def test_only_a_server_that_cannot_be_reached_is_waited_for() -> None:
    url = "http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch"
    refused = MlflowException(
        f"API request to {url} failed with exception HTTPConnectionPool(host='127.0.0.1', "
        "port=1): Max retries exceeded ([Errno 111] Connection refused)"
    )
    assert is_unreachable(refused)
    assert is_unreachable(MlflowException(f"API request to {url} failed with timeout exception"))
    assert is_unreachable(
        MlflowException(f"API request to endpoint {url} failed with error code 503 != 200")
    )
    refused_value = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "x"})
    assert not is_unreachable(refused_value)
    assert not is_unreachable(ValueError("a bad value"))


def test_a_queue_is_sent_in_order_and_emptied(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    queue = Queue(tmp_path / "run")
    now = int(time.time() * 1000)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    records = [
        batch_record(run_id, metrics=[Metric("train/loss", 1.0 / s, now + s, s)])
        for s in range(1, 6)
    ]
    records += [
        batch_record(run_id, tags=[RunTag("note", "kept")]),
        {"op": "artifact", "run_id": run_id, "path": str(checkpoint), "artifact_path": "ckpt"},
        {"op": "artifact", "run_id": run_id, "path": str(tmp_path / "gone"), "artifact_path": None},
        {"op": "terminated", "run_id": run_id, "status": "FINISHED", "end_time": now + 9},
    ]
    for record in records:
        queue.append(record)
    with open(queue.path, "a") as torn:  # a crash in the middle of a line
        torn.write('{"op": "ba')
    assert queue.records() == records
    assert replay_records(client, queue, queue.records()) == len(records)
    assert not queue.path.exists()
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.timestamp) for m in history] == [(s, now + s) for s in range(1, 6)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["note"] == "kept"
    assert [a.path for a in client.list_artifacts(run_id, "ckpt")] == ["ckpt/last.ckpt"]


@pytest.mark.slow
def test_dacapo_sync_is_one_line_without_a_queue_or_a_server(tmp_path: Path) -> None:
    empty = subprocess.run([*SYNC, "--run-dir", str(tmp_path)], capture_output=True, text=True)
    assert empty.returncode == 2
    assert empty.stderr == (
        f"dacapo-sync: error: --run-dir {tmp_path}: no mlflow_offline/ there: nothing waits to "
        "be sent\n"
    )
    uri = f"http://127.0.0.1:{free_port()}"
    Queue(tmp_path).write_meta(uri, "0123")
    started = time.monotonic()
    dead = subprocess.run([*SYNC, "--run-dir", str(tmp_path)], capture_output=True, text=True)
    assert dead.returncode == 2
    (line,) = dead.stderr.splitlines()
    assert line.startswith(
        f"dacapo-sync: error: the MLflow tracking server {uri} is unreachable (Connection refused"
    )
    assert time.monotonic() - started < 60
