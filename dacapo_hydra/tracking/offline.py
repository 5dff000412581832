"""A tracking server that goes away mid-run: what the run logs waits in its folder.

MLflow's own asynchronous logging (`synchronous=False`) does not help here: a batch
its background thread cannot send is logged as an error and dropped. So a run that
records to a tracking server (`http://`, `https://`) talks to it through
:class:`OfflineClient`, a stand-in for the run's `MlflowClient`:

- a write (metrics, params, tags, texts, images, artifacts, the final status) that
  fails because the server cannot be reached (connection refused, a timeout, 5xx after
  MLflow's retries) is appended to `<run folder>/mlflow_offline/queue.jsonl`, and
  training goes on; one warning line says so, once per outage;
- while the server is away, later writes go straight to the queue; every
  :data:`RETRY_S` seconds the next write first asks the server's `/health` (a short
  timeout) and, once it answers, sends the queue in order (metrics keep their steps
  and timestamps), then carries on as before;
- if it never comes back, the queue stays in the run folder and `dacapo-sync
  --run-dir <run folder>` (:func:`replay`) sends it, the best model included.

Artifacts already in the run folder (checkpoints) are queued by path, not copied;
texts, dictionaries and images are written into `mlflow_offline/files/`.

A server that answers with an error (a bad parameter, say) still raises: only a
server that cannot be reached is waited for. MLflow's retries are kept short
(:func:`tighten_http_settings`), so a dead server costs seconds per outage, not minutes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dacapo_hydra.tracking.pending import (
    PROBE_S,
    RETRY_S,
    Queue,
    batch_record,
    is_remote,
    is_unreachable,
    replay_records,
    send,
    tighten_http_settings,
)
from dacapo_hydra.tracking.server import TrackingUnreachable, check_reachable

log = logging.getLogger(__name__)


def _quiet_urllib3() -> None:
    """Drop urllib3's `Retrying (Retry(...)) after connection broken` warnings."""
    pool = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _NoRetryWarnings) for f in pool.filters):
        pool.addFilter(_NoRetryWarnings())


def _reason(err: BaseException) -> str:
    """What an unreachable server's error says, in a few words (`Connection refused`)."""
    text = str(err)
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text[1].strip()
    if "timeout" in text.lower() or "timed out" in text.lower():
        return "no answer: timed out"
    code = re.search(r"error code (\d+)", text)
    return f"HTTP status {code[1]}" if code else text[:120]


class _NoRetryWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying")


class OfflineClient:
    """The run's `MlflowClient`, which queues its writes while the server is away.

    Reads (`get_run`, searches) go to the server; a `get_run` of the run itself while
    the server is away answers what it said when the run opened (Lightning asks it
    before ending the run).

    Args:
        client: the real `MlflowClient`.
        uri: the tracking server.
        run_id: the run.
        run_dir: the run's folder, where the queue lives.

    """

    def __init__(self, client: Any, uri: str, run_id: str, run_dir: str | Path) -> None:
        self.client = client
        self.uri = uri
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.queue = Queue(run_dir)
        self.queue.write_meta(uri, run_id)
        self._lock = threading.RLock()
        self._last_try = 0.0
        self._run = client.get_run(run_id)
        # A queue left by an earlier process of the run (a resume) is sent first.
        self.down_since: float | None = time.time() if self.queue.records() else None
        tighten_http_settings()
        _quiet_urllib3()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    @property
    def waiting(self) -> int:
        """Writes not sent yet."""
        return len(self.queue.records())

    def get_run(self, run_id: str) -> Any:
        """The run from the server; the one seen at the start if it is away."""
        try:
            return self.client.get_run(run_id)
        except Exception as err:
            if run_id != self.run_id or not is_unreachable(err):
                raise
            return self._run

    # Writes -------------------------------------------------------------------------

    def log_batch(
        self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **_: Any
    ) -> None:
        """`MlflowClient.log_batch`, synchronous: a batch that fails is queued, not lost."""
        self._write(lambda: batch_record(run_id, metrics, params, tags))

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None,
        step: int | None = None, **_: Any,
    ) -> None:  # fmt: skip
        """`MlflowClient.log_metric`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metric = Metric(key, value, timestamp or now, step or 0)
        self._write(lambda: batch_record(run_id, metrics=[metric]))

    def log_param(self, run_id: str, key: str, value: Any, **_: Any) -> None:
        """`MlflowClient.log_param`."""
        from mlflow.entities import Param

        self._write(lambda: batch_record(run_id, params=[Param(key, str(value))]))

    def set_tag(self, run_id: str, key: str, value: Any, **_: Any) -> None:
        """`MlflowClient.set_tag`."""
        from mlflow.entities import RunTag

        self._write(lambda: batch_record(run_id, tags=[RunTag(key, str(value))]))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """`MlflowClient.log_text`; queued through a file in the queue's folder."""

        def record() -> dict[str, Any]:
            path = self.queue.file(Path(artifact_file).name)
            path.write_text(text)
            parent = str(Path(artifact_file).parent)
            return self._artifact(run_id, path, None if parent == "." else parent)

        self._write(record, lambda: self.client.log_text(run_id, text, artifact_file))

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        """`MlflowClient.log_dict` (YAML for `.yaml`/`.yml`, else JSON)."""
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            text = yaml.safe_dump(dictionary, default_flow_style=False)
        else:
            text = json.dumps(dictionary, indent=2)
        self.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """`MlflowClient.log_artifact`: a file in the run folder, queued by its path."""
        self._write(lambda: self._artifact(run_id, Path(local_path), artifact_path))

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """`MlflowClient.log_artifacts`: a folder, queued by its path."""
        self._write(
            lambda: {**self._artifact(run_id, Path(local_dir), artifact_path), "op": "artifacts"}
        )

    def log_image(
        self, run_id: str, image: Any, key: str | None = None, step: int | None = None,
        timestamp: int | None = None, **_: Any,
    ) -> None:  # fmt: skip
        """`MlflowClient.log_image` with a key and step (snapshots); queued as a `.npy`."""
        import numpy as np

        stamp = timestamp or int(time.time() * 1000)

        def record() -> dict[str, Any]:
            path = self.queue.file("image.npy")
            np.save(path, np.asarray(image))
            return {"op": "image", "run_id": run_id, "path": str(path), "key": key,
                    "step": step or 0, "timestamp": stamp}  # fmt: skip

        self._write(
            record,
            lambda: self.client.log_image(
                run_id, image, key=key, step=step or 0, timestamp=stamp, synchronous=True
            ),
        )

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        """`MlflowClient.set_terminated`: the run's final status, queued if need be."""
        end = end_time or int(time.time() * 1000)
        self._write(
            lambda: {
                "op": "terminated",
                "run_id": run_id,
                "status": status or "FINISHED",
                "end_time": end,
            }  # fmt: skip
        )

    def defer_model(self, checkpoint: str | Path, register_name: str | None) -> None:
        """Leave the run's MLflow model (from `checkpoint`) to `dacapo-sync`."""
        self.queue.append(
            {"op": "model", "run_id": self.run_id, "checkpoint": str(Path(checkpoint).resolve()),
             "register_name": register_name}
        )  # fmt: skip

    @staticmethod
    def _artifact(run_id: str, path: Path, artifact_path: str | None) -> dict[str, Any]:
        return {"op": "artifact", "run_id": run_id, "path": str(path.resolve()),
                "artifact_path": artifact_path}  # fmt: skip

    # Sending ------------------------------------------------------------------------

    def flush(self) -> bool:
        """Try to send what waits now; True if nothing waits any more."""
        with self._lock:
            if self.down_since is None:
                return True
            self._last_try = 0.0
            return self._back()

    def _write(
        self, record: Callable[[], dict[str, Any]], direct: Callable[[], Any] | None = None
    ) -> None:
        """Send a write (`direct`, else the `record` it makes), or queue its `record`."""
        with self._lock:
            if self.down_since is not None and not self._back():
                self.queue.append(record())
                return
            try:
                if direct is not None:
                    direct()
                else:
                    send(self.client, record())
            except Exception as err:
                if not is_unreachable(err):
                    raise
                self._gone(err)
                self.queue.append(record())

    def _gone(self, err: BaseException) -> None:
        """The server stopped answering: one warning line."""
        self.down_since = time.time()
        self._last_try = time.monotonic()
        reason = _reason(err)
        print(
            f"dacapo: warning: the MLflow tracking server {self.uri} is unreachable ({reason}); "
            f"training goes on: what run {self.run_id} logs waits in "
            f"{self.queue.folder} and is sent when the server is back "
            f"(or with: dacapo-sync --run-dir {self.run_dir})",
            file=sys.stderr,
            flush=True,
        )

    def _back(self) -> bool:
        """If the server answers again, send the queue; True when it is empty."""
        if time.monotonic() - self._last_try < RETRY_S:
            return False
        self._last_try = time.monotonic()
        try:
            check_reachable(self.uri, PROBE_S)
        except TrackingUnreachable:
            return False
        records = self.queue.records()
        sent = replay_records(self.client, self.queue, records)
        if sent < len(records):
            return False
        away = time.time() - (self.down_since or time.time())
        self.down_since = None
        print(
            f"dacapo: the MLflow tracking server {self.uri} is back after {away:.0f} s: "
            f"sent the {sent} writes run {self.run_id} kept meanwhile",
            file=sys.stderr,
            flush=True,
        )
        return True


def install_offline(logger: Any, uri: str, run_id: str, run_dir: str | Path) -> Any:
    """Put an :class:`OfflineClient` under Lightning's `MLFlowLogger` for a server run.

    Returns:
        The client the run should use: the offline one for `http(s)://`, else the
        logger's own.

    """
    client = logger.experiment
    if not is_remote(uri):
        return client
    offline = OfflineClient(client, uri, run_id, run_dir)
    logger._mlflow_client = offline  # Lightning's logger writes through `experiment`
    return offline


def is_down(client: Any) -> bool:
    """Whether `client` is an :class:`OfflineClient` with writes still waiting."""
    return isinstance(client, OfflineClient) and client.down_since is not None
