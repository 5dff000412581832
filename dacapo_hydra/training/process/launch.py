"""Starting a run's processes the same way from every entry point (DDP).

Who starts the processes of a run on several devices
(:func:`~dacapo_hydra.training.process.distributed.plan`):

- a cluster (SLURM through Hydra's submitit launcher, `torchrun`, LSF, MPI): it starts
  one process per device, each running the Hydra job; Lightning's
  `SLURMEnvironment` (or `TorchElasticEnvironment`, ...) says which rank each is;
- otherwise :func:`processes`: the process that runs the job is rank 0 and starts
  ranks 1..N-1 as `python -m dacapo_hydra.training.rank <spec>`, each given the
  job's composed config (not the command line, so a `-m` sweep's job, the Python
  API and `dacapo-train` alike start the same run). Lightning then sees
  `LOCAL_RANK` and joins them instead of re-executing the command line, which
  would re-run a whole `-m` sweep.

The process group (gloo on CPUs, nccl on GPUs) is created here, on a `TCPStore`
held by rank 0, before Lightning's Trainer, which uses it as it is. The store
listens on the job's interface only (loopback when dacapo starts the ranks, the
`MASTER_ADDR` interface on a cluster), and what the ranks share through it is
signed with the job's token (:func:`job_token`,
:func:`~dacapo_hydra.training.process.distributed.seal`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments import (
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.training.process.distributed import World, plan, set_current

log = logging.getLogger(__name__)

# Environment variables Lightning's LightningEnvironment reads; set for the ranks started here.
RANK_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SPEC_ENV = "DACAPO_DDP_SPEC"
# The job's secret, which signs what the ranks share through the store.
TOKEN_ENV = "DACAPO_DDP_TOKEN"
# What names a cluster job, where no token is given (a token then guards against
# mistakes, a stray client of another job, not against someone who reads the job id).
JOB_ID_ENV = ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "LSB_JOBID", "OMPI_MCA_ess_base_jobid")
# Collectives (gradient all-reduce, checkpoint barriers) fail after this long; a
# whole-volume validation does not count, as the other ranks wait on the store.
DEFAULT_TIMEOUT_S = 1800


def _address(world: World) -> tuple[str, int]:
    """The store's address: rank 0's node and port, as Lightning's environment gives them."""
    if world.origin == "lightning":
        return os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"])
    environment = {
        "torchelastic": TorchElasticEnvironment,
        "slurm": SLURMEnvironment,
        "lsf": LSFEnvironment,
        "mpi": MPIEnvironment,
    }[world.origin]()
    return environment.main_address, int(environment.main_port)


def job_token(world: World) -> str:
    """The job's token: `$DACAPO_DDP_TOKEN`, or a new secret when dacapo starts the ranks.

    Ranks a cluster started share a token only through their environment: export
    `DACAPO_DDP_TOKEN` (e.g. `export DACAPO_DDP_TOKEN=$(openssl rand -hex 32)` in the
    batch script) for a secret one; without it the token is made from the job's id
    (`SLURM_JOB_ID`, ...), which keeps out clients of other jobs, not a deliberate one.
    """
    given = os.environ.get(TOKEN_ENV)
    if given:
        return given
    if world.origin == "dacapo":
        return secrets.token_hex(32)
    job = next((f"{k}={os.environ[k]}" for k in JOB_ID_ENV if os.environ.get(k)), "")
    log.warning(
        "DDP: $%s is not set; the ranks' store is guarded by the job's id (%s) only",
        TOKEN_ENV,
        job or "none",
    )
    return f"job:{job}"


def listening_socket(host: str, port: int) -> socket.socket | None:
    """A socket listening on `host:port` only (the store's), or None if it cannot bind there.

    `TCPStore` binds its server to every interface; given this socket's descriptor
    (`master_listen_fd=sock.detach()`), it listens on the job's interface alone, and
    closes the descriptor when it is destroyed.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        log.warning("DDP: the store listens on every interface (%s:%d: %s)", host, port, err)
        return None
    return sock


def _store(host: str, port: int, world: World, timeout: timedelta) -> Any:
    """The run's TCPStore at host:port (rank 0 serves it).

    Rank 0 serves on `host`'s interface alone, unless `host` resolves to a loopback
    address on its node (`/etc/hosts` often maps the node's own name to 127.0.1.1),
    which the other nodes could not reach: then on every interface, as torch does.
    """
    sock = None
    if world.is_zero and not _loopback(host):
        sock = listening_socket(host, port)
    extra = {"master_listen_fd": sock.detach()} if sock is not None else {}
    return dist.TCPStore(host, port, world.size, world.is_zero, timeout=timeout, **extra)


def _loopback(host: str) -> bool:
    """Whether `host` resolves to a loopback address here (or does not resolve)."""
    try:
        address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return True
    return ipaddress.ip_address(address.split("%")[0]).is_loopback


def _join(world: World, host: str, port: int, timeout_s: float, store: Any = None) -> None:
    """Create the process group (on a TCPStore at host:port); Lightning's Trainer reuses it."""
    timeout = timedelta(seconds=timeout_s)
    if store is None:
        store = _store(host, port, world, timeout)
    if world.backend == "nccl" and world.device_ids:
        torch.cuda.set_device(world.device_ids[world.local_rank])
    # Lightning's environment reads these; it skips its own set-up when a group exists.
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = host, str(port)
    dist.init_process_group(
        world.backend, store=store, rank=world.rank, world_size=world.size, timeout=timeout
    )
    world.store = store


def _child_pythonpath() -> str:
    """The import path of this interpreter, so the ranks import what this process imports."""
    entries = [p or os.getcwd() for p in sys.path]
    extra = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*dict.fromkeys(entries), *([extra] if extra else [])])


class _Ranks:
    """Ranks 1..N-1 started by rank 0, watched until they end."""

    def __init__(self, world: World, config_yaml: str, port: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dacapo-ddp-"))
        spec = self.folder / "config.yaml"
        spec.write_text(config_yaml)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.failed: list[tuple[int, int]] = []
        base = {
            **os.environ,
            "NODE_RANK": "0",
            "WORLD_SIZE": str(world.size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "PYTHONPATH": _child_pythonpath(),
            TOKEN_ENV: world.token,
        }
        for rank in range(1, world.processes_per_node):
            env = {**base, "LOCAL_RANK": str(rank), SPEC_ENV: str(spec)}
            command = [sys.executable, "-m", "dacapo_hydra.training.rank", str(spec)]
            self.procs.append(subprocess.Popen(command, env=env))
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._observe, name="dacapo-ranks", daemon=True)
        self._watch.start()

    def _observe(self) -> None:
        """A rank that fails stops the others (rank 0's collectives then fail, not hang)."""
        while not self._stop.wait(1.0):
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code not in (None, 0) and (rank, code) not in self.failed:
                    self.failed.append((rank, code))
                    log.error("rank %d exited with code %d; stopping the other ranks", rank, code)
                    self.terminate()

    def lost(self) -> str | None:
        """The first rank that ended with an error, and how (`was killed by SIGKILL`)."""
        for rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code is None or code == 0:
                continue
            how = (
                f"was killed by {signal.Signals(-code).name}"
                if code < 0 and -code in signal.valid_signals()
                else f"exited with code {code}"
            )
            return f"DDP rank {rank} (pid {proc.pid}) {how}"
        return None

    def terminate(self) -> None:
        """Stop the ranks still running."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def close(self, success: bool, wait_s: float = 120.0) -> None:
        """Wait for the ranks (after a success) or stop them; remove the spec folder."""
        self._stop.set()
        if not success:
            self.terminate()
        deadline = time.monotonic() + (wait_s if success else 10.0)
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("rank process %d did not end; killing it", proc.pid)
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _start_ranks(world: World, cfg: DictConfig, timeout_s: float) -> tuple[_Ranks, int, Any]:
    """Ranks 1..N-1 on this machine, started; (them, the store's port, the store rank 0 serves)."""
    sock = listening_socket("127.0.0.1", 0)  # this machine's ranks only
    if sock is None:
        raise RuntimeError("DDP: cannot listen on 127.0.0.1 for the ranks' store")
    port = int(sock.getsockname()[1])
    store = dist.TCPStore(
        "127.0.0.1",
        port,
        world.size,
        True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
        master_listen_fd=sock.detach(),
    )
    ranks = _Ranks(world, OmegaConf.to_yaml(cfg, resolve=True), port)
    world.watch = ranks.lost
    os.environ.update(LOCAL_RANK="0", NODE_RANK="0", WORLD_SIZE=str(world.size))
    log.info("DDP: started ranks 1..%d of %d on this machine", world.size - 1, world.size)
    return ranks, port, store


def _restore(saved: dict[str, str | None], threads: int) -> None:
    """The environment variables and torch's thread count as they were before the run."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    torch.set_num_threads(threads)


@contextlib.contextmanager
def processes(
    cfg: DictConfig, arguments: dict[str, Any], timeout_s: float | None = None
) -> Iterator[World]:
    """The run's processes, started (or joined) for the duration of the block.

    One process: nothing happens. Otherwise this process joins the process group,
    after starting ranks 1..N-1 itself when no cluster started them (they train
    the same `cfg`, resolved); on leaving, the group is destroyed, the started ranks
    are waited for (or stopped after an error) and the environment is restored, so
    the next job of a sweep starts afresh.

    Args:
        cfg: the composed run config (what the started ranks train).
        arguments: the Trainer's arguments (devices, num_nodes, strategy, accelerator).
        timeout_s: collectives' timeout (default `distributed.timeout` or 1800 s).

    """
    world = plan(arguments)
    if world.size == 1:
        yield world
        return
    if timeout_s is None:
        timeout_s = float(OmegaConf.select(cfg, "distributed.timeout", default=DEFAULT_TIMEOUT_S))
    # Lightning sets torch's threads (and OMP_NUM_THREADS) to CPUs / processes: put them back.
    threads = torch.get_num_threads()
    saved = {key: os.environ.get(key) for key in (*RANK_ENV, "PL_GLOBAL_SEED", "OMP_NUM_THREADS")}
    ranks: _Ranks | None = None
    success = False
    world.token = job_token(world)
    try:
        if world.origin == "dacapo":
            ranks, port, store = _start_ranks(world, cfg, timeout_s)
            _join(world, "127.0.0.1", port, timeout_s, store)
        else:
            _join(world, *_address(world), timeout_s)
        set_current(world)
        yield world
        success = True
    finally:
        set_current(None)
        world.watch = None
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        world.store = None
        if ranks is not None:
            ranks.close(success)
        _restore(saved, threads)
    if ranks is not None and ranks.failed:
        rank, code = ranks.failed[0]
        raise RuntimeError(f"DDP rank {rank} exited with code {code}")


def without_start(cfg: DictConfig) -> DictConfig:
    """`cfg` for a rank other than 0: no start weights (DDP copies rank 0's at set-up)."""
    if not cfg.get("start"):
        return cfg
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    copy.start = None
    return copy


def run_params(trainer: pl.Trainer, batch_size: int, num_workers: int) -> dict[str, Any]:
    """What the run trains with, beyond its config: effective batch, world, precision.

    `effective_batch_size` = batch x devices x nodes x accumulated batches: the crops
    behind one optimiser step.
    """
    return {
        "effective_batch_size": batch_size
        * trainer.num_devices
        * trainer.num_nodes
        * trainer.accumulate_grad_batches,
        "world_size": trainer.world_size,
        "resolved.precision": str(trainer.precision),
        "resolved.num_workers": num_workers,
    }


def requeued() -> bool:
    """Whether this is a SLURM job that was requeued (preempted or timed out, then restarted)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def requeued_run(tracking_uri: str, experiment_name: str, run_dir: Path) -> str | None:
    """The unfinished MLflow run that trained in `run_dir` (a requeued job's folder), or None."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    quoted = str(Path(run_dir).resolve()).replace("'", "\\'")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.run_dir = '{quoted}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def free_port() -> int:
    """A TCP port free on this machine now (for tests and tools)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
