"""The end of a run whose tracking server is away, and `dacapo-sync`, which sends the rest.

:func:`finish_model` logs the run's MLflow model, or leaves it queued when the server
still does not answer at the end (:mod:`~dacapo_hydra.tracking.offline`);
:func:`waiting_note` is what the run's last line adds then; :func:`sync_run_dir`
sends a run folder's queue, the model included, once the server is back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dacapo_hydra.tracking.model import log_network, model_checkpoint
from dacapo_hydra.tracking.offline import OfflineClient, is_down
from dacapo_hydra.tracking.pending import Queue, replay_records, tighten_http_settings
from dacapo_hydra.tracking.run import RunRecorder
from dacapo_hydra.tracking.server import check_reachable


def finish_model(
    client: Any, recorder: RunRecorder, checkpoint_dir: str | Path, load: Callable[[Path], Any]
) -> None:
    """`recorder.finish`, or, with the server still away, the model left to `dacapo-sync`."""
    if not is_down(client) or client.flush():
        recorder.finish(checkpoint_dir, load)
        return
    if recorder.monitor is not None:
        recorder.monitor.finish()
    checkpoint = model_checkpoint(Path(checkpoint_dir), recorder.criterion)
    name = OmegaConf.select(recorder.cfg, "mlflow.register_model_name", default=None)
    client.defer_model(checkpoint, name)


def waiting_note(client: Any) -> str:
    """`; N writes to MLflow wait in ...: send them with dacapo-sync ...`, or nothing."""
    if not isinstance(client, OfflineClient) or not client.waiting:
        return ""
    return (
        f"; the MLflow tracking server {client.uri} is away: {client.waiting} writes (the run's "
        f"end included) wait in {client.queue.folder}: send them with dacapo-sync --run-dir "
        f"{client.run_dir}"
    )


@dataclass
class SyncResult:
    """What `dacapo-sync` sent."""

    run_id: str
    tracking_uri: str
    sent: int
    left: int
    status: str


def sync_run_dir(
    run_dir: str | Path, load: Callable[[Path], Any], tracking_uri: str | None = None
) -> SyncResult:
    """Send what a run folder's queue holds to its tracking server, in order.

    Args:
        run_dir: the run's folder (its `mlflow_offline/`).
        load: builds the trained module from a checkpoint, for the queued model.
        tracking_uri: another address of the same server (default: the one the run used).

    Raises:
        FileNotFoundError: `run_dir` has no queue.
        TrackingUnreachable: the server still does not answer (one line).

    """
    from mlflow.tracking import MlflowClient

    queue = Queue(run_dir)
    meta = queue.meta()
    if not meta:
        raise FileNotFoundError(
            f"--run-dir {run_dir}: no {queue.folder.name}/ there: nothing waits to be sent"
        )
    uri = tracking_uri or meta["tracking_uri"]
    tighten_http_settings()
    check_reachable(uri)
    client = MlflowClient(uri)

    def log_model(record: dict[str, Any]) -> None:
        checkpoint = Path(record["checkpoint"])
        log_network(uri, record["run_id"], load(checkpoint), checkpoint, record["register_name"])

    records = queue.records()
    sent = replay_records(client, queue, records, log_model)
    status = client.get_run(meta["run_id"]).info.status
    return SyncResult(meta["run_id"], uri, sent, len(records) - sent, status)
