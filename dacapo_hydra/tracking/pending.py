"""Writes to a tracking server that could not be sent, kept in the run folder in order.

:class:`Queue` is `<run folder>/mlflow_offline/queue.jsonl` (one JSON object a line:
metrics with their steps and timestamps, params, tags, artifacts by path, the final
status, the model to log) and `files/` for content that has no file of its own (a
text, an image); :func:`send` sends one record, :func:`replay_records` a queue's
records in order (:mod:`~dacapo_hydra.tracking.offline` while the run goes on,
`dacapo-sync` after it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OFFLINE_DIR = "mlflow_offline"
QUEUE_FILE = "queue.jsonl"
META_FILE = "run.json"
# Seconds between attempts to reach a server that did not answer.
RETRY_S = 5.0
# Seconds the `/health` probe of a server that was away waits for its answer.
PROBE_S = 2.0
# MLflow's HTTP settings for a run (each kept if the user set it): 2 retries 1 s and
# 2 s apart, each try waiting at most 15 s, instead of 7 retries backing off for minutes.
TIGHT_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_UNREACHABLE = re.compile(r"failed with (timeout )?exception|failed with error code 5\d\d")


def tighten_http_settings() -> None:
    """Set MLflow's HTTP retry and timeout settings (:data:`TIGHT_HTTP_SETTINGS`) not set."""
    for key, value in TIGHT_HTTP_SETTINGS.items():
        os.environ.setdefault(key, value)
    # MLflow prints "View run ... at: <server>" when a run on a server ends; the run's
    # own last line (or dacapo-sync's) says where it is.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def is_remote(uri: str) -> bool:
    """Whether `uri` is a tracking server (as opposed to a database or a folder)."""
    return uri.split("://", 1)[0].lower() in ("http", "https")


def is_unreachable(err: BaseException) -> bool:
    """Whether `err` says the server could not be reached, not that it refused the request."""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(err, RestException):
        return False  # the server answered, with an error of its own
    if isinstance(err, MlflowException):
        return bool(_UNREACHABLE.search(str(err)))
    import requests

    return isinstance(err, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


class Queue:
    """The run folder's queue of writes not sent: one JSON object a line, in order.

    Args:
        run_dir: the run's folder.

    """

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / OFFLINE_DIR
        self.path = self.folder / QUEUE_FILE
        self._seq = 0

    def records(self) -> list[dict[str, Any]]:
        """What waits, oldest first (a torn last line, from a crash, is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Add one write at the end, flushed to the operating system at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def keep(self, records: list[dict[str, Any]]) -> None:
        """Replace the queue with `records` (those still not sent), atomically."""
        if not records:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(temporary, self.path)

    def file(self, name: str) -> Path:
        """A fresh path for content the queue holds (a text, an image), named `name`."""
        self._seq += 1
        folder = self.folder / "files" / f"{time.time_ns()}-{self._seq}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def write_meta(self, uri: str, run_id: str) -> None:
        """Record which server and run the queue belongs to (for `dacapo-sync`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / META_FILE
        if not meta.exists():
            meta.write_text(json.dumps({"tracking_uri": uri, "run_id": run_id}))

    def meta(self) -> dict[str, str]:
        """`tracking_uri` and `run_id` of the queue's run (empty if none was queued)."""
        meta = self.folder / META_FILE
        return json.loads(meta.read_text()) if meta.exists() else {}


def batch_record(
    run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()
) -> dict[str, Any]:
    """A `log_batch` as a queue record (MLflow entities in, plain lists out)."""
    now = int(time.time() * 1000)
    return {
        "op": "batch",
        "run_id": run_id,
        "metrics": [[m.key, m.value, m.timestamp or now, m.step or 0] for m in metrics or ()],
        "params": [[p.key, str(p.value)] for p in params or ()],
        "tags": [[t.key, str(t.value)] for t in tags or ()],
    }


def send(
    client: Any, record: dict[str, Any], load_model: Callable[[dict[str, Any]], Any] | None = None
) -> None:
    """Send one queued write with `client` (an `MlflowClient`); raise what it raises.

    Args:
        client: the real client.
        record: a queued write.
        load_model: logs the run's model (`op: model`); None skips it with a warning.

    """
    from mlflow.entities import Metric, Param, RunTag

    op, run_id = record["op"], record["run_id"]
    if op == "batch":
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, t, s) for k, v, t, s in record["metrics"]],
            params=[Param(k, v) for k, v in record["params"]],
            tags=[RunTag(k, v) for k, v in record["tags"]],
            synchronous=True,
        )
    elif op in ("artifact", "artifacts"):
        path = Path(record["path"])
        if not path.exists():  # a periodic checkpoint rotated away since
            log.info("not sending %s: it is gone", path)
        elif op == "artifact":
            client.log_artifact(run_id, str(path), record.get("artifact_path"))
        else:
            client.log_artifacts(run_id, str(path), record.get("artifact_path"))
    elif op == "image":
        import numpy as np

        client.log_image(
            run_id,
            np.load(record["path"]),
            key=record["key"],
            step=record["step"],
            timestamp=record["timestamp"],
            synchronous=True,
        )
    elif op == "terminated":
        client.set_terminated(run_id, record["status"], record["end_time"])
    elif op == "model":
        if load_model is None:
            log.warning("run %s: the model is logged by dacapo-sync", run_id)
            raise ConnectionError("the model waits for dacapo-sync")
        load_model(record)
    else:
        raise ValueError(f"unknown queued write {op!r}")


def replay_records(
    client: Any,
    queue: Queue,
    records: list[dict[str, Any]],
    load_model: Callable[[dict[str, Any]], Any] | None = None,
) -> int:
    """Send `records` in order until the server stops answering; keep the rest queued.

    A write the server refuses (it answered with an error) is named in a warning and
    dropped, so that one bad value does not hold the rest back.

    Returns:
        How many were handled (sent or dropped).

    """
    handled = 0
    try:
        for record in records:
            try:
                send(client, record, load_model)
            except Exception as err:
                if is_unreachable(err) or isinstance(err, ConnectionError):
                    break
                log.warning("dropped a queued %s write: %s", record["op"], err)
            handled += 1
    finally:
        queue.keep(records[handled:])
        if handled == len(records):
            shutil.rmtree(queue.folder / "files", ignore_errors=True)
    return handled
