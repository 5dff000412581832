"""What DDP ranks share through rank 0's store: signed JSON, never pickle; strangers refused."""

from __future__ import annotations

import json
import os
import pickle
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from dacapo_hydra.training.process import launch
from dacapo_hydra.training.process.distributed import RendezvousRefused, World, seal, unseal
from dacapo_hydra.training.process.resume import ResumePoint, from_start_record, start_record

TIMEOUT = timedelta(seconds=5)


class Exploit:
    """Unpickling this creates a file: proof that a value was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def stores() -> tuple[dist.TCPStore, int]:
    """Rank 0's store, served on loopback only (as the ranks dacapo starts use it)."""
    sock = launch.listening_socket("127.0.0.1", 0)
    assert sock is not None
    port = sock.getsockname()[1]
    server = dist.TCPStore(
        "127.0.0.1",
        port,
        2,
        True,
        timeout=TIMEOUT,
        wait_for_workers=False,
        master_listen_fd=sock.detach(),
    )
    return server, port


def _client(port: int) -> dist.TCPStore:
    return dist.TCPStore("127.0.0.1", port, 2, False, timeout=TIMEOUT)


def test_ranks_share_signed_json(stores: tuple[dist.TCPStore, int], tmp_path: Path) -> None:
    server, port = stores
    zero = World(size=2, rank=0, store=server, token="job-secret")
    one = World(size=2, rank=1, store=_client(port), token="job-secret")
    resume = ResumePoint("abc123", tmp_path / "last.ckpt", 7, {"seed": 1}, {"dims": 2})
    start = (resume, tmp_path / "run")
    got: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: got.update(
            start=one.from_rank_zero("start", lambda: None, start_record, from_start_record)
        )
    )
    thread.start()
    assert zero.from_rank_zero("start", lambda: start, start_record, from_start_record) == start
    thread.join(10)
    assert got["start"] == start  # Paths and the dataclass made again on rank 1
    # What went through the store: a signature, then plain JSON.
    mac, payload = server.get("dacapo/start/0").split(b"\n", 1)
    assert len(mac) == 64 and json.loads(payload)[1][1] == str(tmp_path / "run")


def test_a_stray_client_is_refused_and_nothing_is_unpickled(
    stores: tuple[dist.TCPStore, int], tmp_path: Path
) -> None:
    server, port = stores
    one = World(size=2, rank=1, store=_client(port), token="job-secret")
    stray = _client(port)  # anyone who reaches the port
    marker = tmp_path / "pwned"
    stray.set("dacapo/start/0", pickle.dumps(("ok", Exploit(marker))))
    with pytest.raises(RendezvousRefused) as refused:
        one.from_rank_zero("start", lambda: None)
    (line,) = str(refused.value).splitlines()
    assert line.startswith("DDP store: refused the value of dacapo/start/0: ")
    assert "not signed with this job's token" in line
    assert not marker.exists()
    # Well-formed JSON signed with another job's token is refused too.
    stray.set("dacapo/run/0", seal("another job", "dacapo/run/0", ["ok", "0a1b"]))
    with pytest.raises(RendezvousRefused, match="dacapo/run/0"):
        one.from_rank_zero("run", lambda: None)
    # A value signed for one key does not pass for another.
    stray.set("dacapo/run/1", seal("job-secret", "dacapo/run/0", ["ok", "0a1b"]))
    with pytest.raises(RendezvousRefused, match="dacapo/run/1"):
        one.from_rank_zero("run", lambda: None)


def test_the_store_listens_on_loopback_and_each_job_has_its_own_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock = launch.listening_socket("127.0.0.1", 0)
    assert sock is not None and sock.getsockname()[0] == "127.0.0.1"
    sock.close()
    monkeypatch.delenv(launch.TOKEN_ENV, raising=False)
    dacapo = World(size=2, origin="dacapo")
    first, second = launch.job_token(dacapo), launch.job_token(dacapo)
    assert first != second and len(first) == 64
    monkeypatch.setenv(launch.TOKEN_ENV, "from-the-batch-script")
    assert launch.job_token(World(size=2, origin="slurm")) == "from-the-batch-script"
    monkeypatch.delenv(launch.TOKEN_ENV)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert launch.job_token(World(size=2, origin="slurm")) == "job:SLURM_JOB_ID=4242"
    assert unseal("t", "k", seal("t", "k", {"nan": float("nan")}))["nan"] != 0
