"""A tracking server that is not there: one line, in seconds, before any work."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dacapo_hydra.tracking import TrackingUnreachable, check_reachable
from dacapo_hydra.training.process.launch import free_port
from tests.conftest import REPO, tiny_overrides


class _Health(http.server.BaseHTTPRequestHandler):
    """Answers /health with OK and anything else with 404, as `mlflow server` does."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def answering() -> Iterator[str]:
    """A real HTTP server on a free port of 127.0.0.1."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_that_answers_passes(answering: str) -> None:
    check_reachable(answering)
    check_reachable(f"{answering}/prefix")  # a 404 is an answer: MLflow says the rest
    check_reachable("sqlite:////nowhere/mlflow.db")  # not a server: not asked


def test_a_closed_port_is_one_line_at_once() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingUnreachable) as unreachable:
        check_reachable(uri)
    assert time.monotonic() - started < 2
    (line,) = str(unreachable.value).splitlines()
    assert line.startswith(f"the MLflow tracking server {uri} is unreachable (Connection refused;")
    assert "mlflow.tracking_uri or $MLFLOW_TRACKING_URI; nothing was started" in line


def test_a_server_that_never_answers_times_out_in_the_given_seconds() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TrackingUnreachable, match=r"\(no answer: timed out; .* waited 1 s\)"):
            check_reachable(uri, timeout_s=1)
        assert 0.9 < time.monotonic() - started < 5


@pytest.mark.slow
def test_training_against_a_dead_server_says_so_in_one_line_before_any_work(
    tmp_path: Path,
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            *tiny_overrides("synthetic_2d"),
            "datasplit=synthetic_2d",
            f"mlflow.tracking_uri={uri}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"dacapo: the MLflow tracking server {uri} is unreachable ")
    # Seconds (the interpreter's start and imports), not MLflow's minutes of retries.
    assert elapsed < 60, elapsed
    # Nothing started: no store, no checkpoint (only Hydra's job folder exists).
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not list(tmp_path.rglob("*.ckpt"))
