"""Training on several processes: Lightning's DDP, started the same way from every entry point.

A run with `lightning.devices=N` (N > 1, or `lightning.num_nodes` > 1) trains on N
processes per node with Lightning's DDP strategy. Who starts the processes:

- a cluster (SLURM through Hydra's submitit launcher, `torchrun`, LSF, MPI): it starts
  one process per device, each running the Hydra job; Lightning's
  `SLURMEnvironment` (or `TorchElasticEnvironment`, ...) says which rank each is;
- otherwise this module (:func:`processes`): the process that runs the job is rank 0
  and starts ranks 1..N-1 as `python -m dacapo_hydra.training.distributed <spec>`, each
  given the job's composed config (not the command line, so a `-m` sweep's job, the
  Python API and `dacapo-train` alike start the same run). Lightning then sees
  `LOCAL_RANK` and joins them instead of re-executing the command line, which would
  re-run a whole `-m` sweep.

The process group (gloo on CPUs, nccl on GPUs) is created here, on a `TCPStore`
held by rank 0, before Lightning's Trainer, which uses it as it is. Rank 0 alone
touches MLflow; what the other ranks need from it (the run folder, the checkpoint a
resumed run continues from, the crop seed) goes through the store
(:meth:`World.from_rank_zero`), and so does the outcome of a whole-volume
validation, which rank 0 runs while the others poll the store, without a
collective's timeout (:func:`on_rank_zero`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dacapo_hydra.errors import ConfigError

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

# Environment variables Lightning's LightningEnvironment reads; set for the ranks started here.
RANK_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SPEC_ENV = "DACAPO_DDP_SPEC"
# Collectives (gradient all-reduce, checkpoint barriers) fail after this long; a
# whole-volume validation does not count, as the other ranks wait on the store.
DEFAULT_TIMEOUT_S = 1800
POLL_S = 0.5
_CURRENT: World | None = None


class RankZeroFailed(RuntimeError):
    """Rank 0 failed in a section the other ranks waited for; its message is this one's."""


@dataclass
class World:
    """The processes of one run, and this process's place among them.

    Attributes:
        size: processes in all (devices per node x nodes).
        rank: this process's global rank (0: the one that records the run in MLflow).
        local_rank: its rank on its node.
        processes_per_node: processes (devices) per node.
        num_nodes: nodes.
        origin: who started the processes: `single` (one process), `dacapo` (this
            module), `lightning` (`LOCAL_RANK` given, e.g. ranks this module started),
            or a cluster environment of Lightning's (`slurm`, `torchelastic`, `lsf`, `mpi`).
        backend: the process group's backend (`gloo`, `nccl`).
        device_ids: the CUDA devices of this node's processes (None on CPUs).

    """

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    processes_per_node: int = 1
    num_nodes: int = 1
    origin: str = "single"
    backend: str = "gloo"
    device_ids: list[int] | None = None
    store: Any = field(default=None, repr=False)
    _calls: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def is_zero(self) -> bool:
        """Whether this is global rank 0."""
        return self.rank == 0

    def from_rank_zero(self, name: str, compute: Callable[[], T]) -> T:
        """`compute()` on rank 0; every rank returns its result (picklable).

        The other ranks poll the store until rank 0 has put the result there, however
        long that takes (a whole-volume validation), and raise :class:`RankZeroFailed`
        (a :class:`ConfigError` for bad input) when rank 0 raised instead. The ranks
        must call this in the same order (names are counted per process).

        Args:
            name: what is computed (keys in the store are `<name>/<n-th call>`).
            compute: the work of rank 0.

        """
        if self.size == 1 or self.store is None:
            return compute()
        count = self._calls.get(name, 0)
        self._calls[name] = count + 1
        key = f"dacapo/{name}/{count}"
        if self.is_zero:
            try:
                value = compute()
            except BaseException as err:
                kind = "config" if isinstance(err, ConfigError) else "error"
                message = f"{type(err).__name__}: {err}" if kind == "error" else str(err)
                self.store.set(key, pickle.dumps((kind, message)))
                raise
            self.store.set(key, pickle.dumps(("ok", value)))
            return value
        while not self.store.check([key]):
            time.sleep(POLL_S)
        kind, value = pickle.loads(self.store.get(key))
        if kind == "config":
            raise ConfigError(value)
        if kind == "error":
            raise RankZeroFailed(f"rank 0 failed: {value}")
        return value

    def rank_zero_first(self, name: str, work: Callable[[], T]) -> T:
        """`work()` on every rank, rank 0 first: it may write what the others then read.

        Building a run may generate its synthetic data; the other ranks start once
        rank 0 is done, and raise what it raised (:meth:`from_rank_zero`).
        """
        if self.is_zero:
            done: list[T] = []
            self.from_rank_zero(name, lambda: done.append(work()))
            return done[0]
        self.from_rank_zero(name, lambda: None)
        return work()


def current() -> World | None:
    """The world of the run in progress in this process (None outside :func:`processes`)."""
    return _CURRENT


def on_rank_zero(trainer: pl.Trainer, name: str, compute: Callable[[], T]) -> T | None:
    """Inside a Trainer's hooks: `compute()` on global rank 0, its result on every rank.

    Uses the run's store (:meth:`World.from_rank_zero`: the others wait without a
    timeout); with a process group made elsewhere, Lightning's broadcast (which
    times out as its collectives do).

    Args:
        trainer: the running Trainer.
        name: what is computed.
        compute: the work of rank 0.

    """
    world = _CURRENT
    if trainer.world_size == 1:
        return compute()
    if world is not None and world.store is not None and world.size == trainer.world_size:
        return world.from_rank_zero(name, compute)
    value = compute() if trainer.is_global_zero else None
    return trainer.strategy.broadcast(value, src=0)


def _accelerator(accelerator: Any) -> str:
    """`cpu`, `cuda` or `mps` for a Lightning accelerator flag (`auto`, `gpu`, an instance)."""
    import torch

    name = str(accelerator if isinstance(accelerator, str) else type(accelerator).__name__).lower()
    cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if cuda else "cpu"
    if name == "gpu":  # without CUDA or MPS, Lightning's device parsing says what is missing
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        return "mps" if mps and not cuda else "cuda"
    if "cuda" in name:
        return "cuda"
    if "mps" in name:
        return "mps"
    return "cpu"


def _strategy_start_method(strategy: Any) -> tuple[str, bool]:
    """(how the strategy starts processes, whether it trains on one device only)."""
    if not isinstance(strategy, str):
        single = type(strategy).__name__.startswith("Single")
        return str(getattr(strategy, "_start_method", "popen")), single
    if strategy == "auto":
        return "popen", False
    from pytorch_lightning.strategies import StrategyRegistry

    if strategy not in StrategyRegistry:
        return "popen", False  # Lightning names it in its own error
    entry = StrategyRegistry[strategy]
    single = entry["strategy"].__name__.startswith("Single")
    return str(entry["init_params"].get("start_method", "popen")), single


def plan(arguments: dict[str, Any]) -> World:
    """The processes `pl.Trainer(**arguments)` trains on, and this one's rank; checked.

    Args:
        arguments: the Trainer's arguments
            (:func:`~dacapo_hydra.config.lightning.trainer_arguments`).

    Raises:
        ConfigError: naming `lightning.strategy` (a strategy that spawns its own
            processes) or `lightning.num_nodes` (several nodes without a cluster).

    """
    from lightning_fabric.accelerators import CPUAccelerator, CUDAAccelerator
    from lightning_fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    accelerator = _accelerator(arguments.get("accelerator", "auto"))
    devices = arguments.get("devices", "auto")
    num_nodes = int(arguments.get("num_nodes") or 1)
    start_method, single = _strategy_start_method(arguments.get("strategy", "auto"))
    device_ids = None
    try:
        if accelerator == "cuda":
            count = CUDAAccelerator.auto_device_count()
            wanted = count if devices in ("auto", -1, "-1") else devices
            device_ids = list(CUDAAccelerator.parse_devices(wanted) or [])
            per_node = len(device_ids)
        elif accelerator == "cpu":
            per_node = CPUAccelerator.parse_devices(1 if devices == "auto" else devices)
        else:
            per_node = 1
    except Exception as err:  # Lightning's MisconfigurationException, TypeError, ...
        raise ConfigError(f"lightning.devices={devices!r}: {' '.join(str(err).split())}") from err
    if single:
        per_node = 1
    size = per_node * num_nodes
    backend = "nccl" if accelerator == "cuda" else "gloo"
    if size == 1:
        return World(backend=backend, device_ids=device_ids)
    strategy = arguments.get("strategy", "auto")
    if start_method != "popen":
        raise ConfigError(
            f"lightning.strategy={strategy}: starts its processes with {start_method!r}, which "
            "cannot share the run's MLflow run and callbacks; use ddp (dacapo starts the "
            "processes itself, from any entry point and in -m sweeps)"
        )
    common = {
        "size": size,
        "processes_per_node": per_node,
        "num_nodes": num_nodes,
        "backend": backend,
        "device_ids": device_ids,
    }
    environments = (
        ("torchelastic", TorchElasticEnvironment),
        ("slurm", SLURMEnvironment),
        ("lsf", LSFEnvironment),
        ("mpi", MPIEnvironment),
    )
    for origin, environment in environments:
        if environment.detect():
            env = environment()
            return World(
                rank=env.global_rank(), local_rank=env.local_rank(), origin=origin, **common
            )
    if "LOCAL_RANK" in os.environ:
        local = int(os.environ["LOCAL_RANK"])
        node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
        return World(rank=node * per_node + local, local_rank=local, origin="lightning", **common)
    if num_nodes > 1:
        raise ConfigError(
            f"lightning.num_nodes={num_nodes}: several nodes need a cluster to start the "
            "processes: hydra/launcher=slurm_gpu (or slurm_cpu) on SLURM, or torchrun"
        )
    return World(origin="dacapo", **common)


def _address(world: World) -> tuple[str, int]:
    """The store's address: rank 0's node and port, as Lightning's environment gives them."""
    if world.origin == "lightning":
        return os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"])
    from lightning_fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    environment = {
        "torchelastic": TorchElasticEnvironment,
        "slurm": SLURMEnvironment,
        "lsf": LSFEnvironment,
        "mpi": MPIEnvironment,
    }[world.origin]()
    return environment.main_address, int(environment.main_port)


def _join(world: World, host: str, port: int, timeout_s: float, store: Any = None) -> None:
    """Create the process group (on a TCPStore at host:port); Lightning's Trainer reuses it."""
    import torch
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if store is None:
        store = dist.TCPStore(host, port, world.size, world.is_zero, timeout=timeout)
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
        }
        for rank in range(1, world.processes_per_node):
            env = {**base, "LOCAL_RANK": str(rank), SPEC_ENV: str(spec)}
            command = [sys.executable, "-m", "dacapo_hydra.training.distributed", str(spec)]
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
    global _CURRENT
    from omegaconf import OmegaConf

    world = plan(arguments)
    if world.size == 1:
        yield world
        return
    import torch.distributed as dist

    if timeout_s is None:
        timeout_s = float(OmegaConf.select(cfg, "distributed.timeout", default=DEFAULT_TIMEOUT_S))
    import torch

    # Lightning sets torch's threads (and OMP_NUM_THREADS) to CPUs / processes: put them back.
    threads = torch.get_num_threads()
    saved = {key: os.environ.get(key) for key in (*RANK_ENV, "PL_GLOBAL_SEED", "OMP_NUM_THREADS")}
    ranks: _Ranks | None = None
    success = False
    try:
        if world.origin == "dacapo":
            store = dist.TCPStore(
                "127.0.0.1",
                0,
                world.size,
                True,
                timeout=timedelta(seconds=timeout_s),
                wait_for_workers=False,
            )
            port = int(store.port)
            ranks = _Ranks(world, OmegaConf.to_yaml(cfg, resolve=True), port)
            os.environ.update(LOCAL_RANK="0", NODE_RANK="0", WORLD_SIZE=str(world.size))
            log.info("DDP: started ranks 1..%d of %d on this machine", world.size - 1, world.size)
            _join(world, "127.0.0.1", port, timeout_s, store)
        else:
            _join(world, *_address(world), timeout_s)
        _CURRENT = world
        yield world
        success = True
    finally:
        _CURRENT = None
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        world.store = None
        if ranks is not None:
            ranks.close(success)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
    if ranks is not None and ranks.failed:
        rank, code = ranks.failed[0]
        raise RuntimeError(f"DDP rank {rank} exited with code {code}")


def without_start(cfg: DictConfig) -> DictConfig:
    """`cfg` for a rank other than 0: no start weights (DDP copies rank 0's at set-up)."""
    from omegaconf import OmegaConf

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
    from mlflow.tracking import MlflowClient

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


def main(argv: Sequence[str] | None = None) -> None:
    """A rank started by :func:`processes`: train the config in the spec file.

    Errors rank 0 reports too (bad input, rank 0's own failure) end it quietly with
    code 2 and 1; anything else with its traceback.
    """
    from omegaconf import OmegaConf

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m dacapo_hydra.training.distributed <config.yaml>", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING, format="[rank %(process)d] %(message)s")
    cfg = OmegaConf.create(Path(args[0]).read_text())
    from dacapo_hydra.training.run import train

    try:
        train(cfg)
    except ConfigError:
        sys.exit(2)
    except RankZeroFailed:
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank; rank 0 reports it
        sys.exit(130)


if __name__ == "__main__":
    main()
