"""The processes of a training run (Lightning's DDP) and this process's place among them.

A run with `lightning.devices=N` (N > 1, or `lightning.num_nodes` > 1) trains on N
processes per node with Lightning's DDP strategy. :func:`plan` says how many there
are and which rank this process is, as Lightning's cluster environments
(`SLURMEnvironment`, `TorchElasticEnvironment`, ...) or `LOCAL_RANK` tell it;
:mod:`dacapo_hydra.training.process.launch` starts or joins them.

Rank 0 alone touches MLflow; what the other ranks need from it (the run folder,
the checkpoint a resumed run continues from, the crop seed) goes through the
process group's store (:meth:`World.from_rank_zero`), and so does the outcome of a
whole-volume validation, which rank 0 runs while the others poll the store,
without a collective's timeout (:func:`on_rank_zero`).

Anyone who reaches the store's port can write to it, so what goes through it is
data, never code: JSON, signed with the job's token (HMAC-SHA256 over the key and
the value, :func:`seal`); a value that is not signed with it is refused
(:class:`RendezvousRefused`), naming the key, before it is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
from lightning_fabric.accelerators import CPUAccelerator, CUDAAccelerator
from lightning_fabric.plugins.environments import (
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from pytorch_lightning.strategies import StrategyRegistry

from dacapo_hydra.errors import ConfigError

T = TypeVar("T")

POLL_S = 0.5
_CURRENT: World | None = None


class RankZeroFailed(RuntimeError):
    """Rank 0 failed in a section the other ranks waited for; its message is this one's."""


class RendezvousRefused(RuntimeError):
    """A value in the run's store was not written by this job (not signed with its token)."""


def seal(token: str, key: str, value: Any) -> bytes:
    """`value` as JSON, signed for `key` with `token`: the hex HMAC-SHA256, a newline, the JSON.

    Example:
        >>> sealed = seal("secret", "dacapo/run/0", ["ok", "0a1b"])
        >>> unseal("secret", "dacapo/run/0", sealed)
        ['ok', '0a1b']

    """
    payload = json.dumps(value, allow_nan=True).encode()
    mac = hmac.new(token.encode(), key.encode() + b"\0" + payload, hashlib.sha256).hexdigest()
    return mac.encode() + b"\n" + payload


def unseal(token: str, key: str, sealed: bytes) -> Any:
    """The value :func:`seal` signed; a value signed otherwise is refused, unread.

    Raises:
        RendezvousRefused: naming `key`.

    """
    mac, _, payload = bytes(sealed).partition(b"\n")
    expected = hmac.new(token.encode(), key.encode() + b"\0" + payload, hashlib.sha256)
    if not hmac.compare_digest(mac, expected.hexdigest().encode()):
        raise RendezvousRefused(
            f"DDP store: refused the value of {key}: it is not signed with this job's token "
            "(written by a process outside the job?)"
        )
    return json.loads(payload)


@dataclass
class World:
    """The processes of one run, and this process's place among them.

    Attributes:
        size: processes in all (devices per node x nodes).
        rank: this process's global rank (0: the one that records the run in MLflow).
        local_rank: its rank on its node.
        processes_per_node: processes (devices) per node.
        num_nodes: nodes.
        origin: who started the processes: `single` (one process), `dacapo`
            (:func:`~dacapo_hydra.training.process.launch.processes`), `lightning` (`LOCAL_RANK`
            given, e.g. ranks `processes` started), or a cluster environment of
            Lightning's (`slurm`, `torchelastic`, `lsf`, `mpi`).
        backend: the process group's backend (`gloo`, `nccl`).
        device_ids: the CUDA devices of this node's processes (None on CPUs).
        token: the job's secret, which signs what goes through the store (:func:`seal`).
        watch: says which of the ranks this process started has ended, and how (None
            while all run); see :meth:`lost_rank`.

    """

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    processes_per_node: int = 1
    num_nodes: int = 1
    origin: str = "single"
    backend: str = "gloo"
    device_ids: list[int] | None = None
    token: str = field(default="", repr=False)
    store: Any = field(default=None, repr=False)
    watch: Callable[[], str | None] | None = field(default=None, repr=False)
    _calls: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def is_zero(self) -> bool:
        """Whether this is global rank 0."""
        return self.rank == 0

    def lost_rank(self, wait_s: float = 3.0) -> str | None:
        """Which rank ended under this one (`DDP rank 1 (pid 42) was killed by SIGKILL`), if any.

        For rank 0 of ranks it started itself: after a collective failed, the rank
        that died is usually gone already; this waits up to `wait_s` for one to end.
        None when none ended (or the ranks were started by a cluster).
        """
        if self.watch is None:
            return None
        deadline = time.monotonic() + wait_s
        while (lost := self.watch()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return lost

    def from_rank_zero(
        self,
        name: str,
        compute: Callable[[], T],
        encode: Callable[[T], Any] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> T:
        """`compute()` on rank 0; every rank returns its result.

        The result goes through the store as signed JSON (:func:`seal`): `encode`
        makes it JSON-able, `decode` makes it again on the other ranks (default: as
        is). The other ranks poll the store until rank 0 has put the result there,
        however long that takes (a whole-volume validation), and raise
        :class:`RankZeroFailed` (a :class:`ConfigError` for bad input) when rank 0
        raised instead. The ranks must call this in the same order (names are
        counted per process).

        Args:
            name: what is computed (keys in the store are `<name>/<n-th call>`).
            compute: the work of rank 0.
            encode: the result as JSON-able data.
            decode: the inverse of `encode`.

        Raises:
            RendezvousRefused: a value not signed with the job's token.

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
                self.store.set(key, seal(self.token, key, [kind, message]))
                raise
            data = encode(value) if encode is not None else value
            self.store.set(key, seal(self.token, key, ["ok", data]))
            return value
        while not self.store.check([key]):
            time.sleep(POLL_S)
        kind, data = unseal(self.token, key, self.store.get(key))
        if kind == "config":
            raise ConfigError(data)
        if kind == "error":
            raise RankZeroFailed(f"rank 0 failed: {data}")
        return decode(data) if decode is not None else data

    def rank_zero_first(self, name: str, work: Callable[[], T]) -> T:
        """`work()` on every rank, rank 0 first: it may write what the others then read.

        Building a run may generate its synthetic data; the other ranks start once
        rank 0 is done, and raise what it raised (:meth:`from_rank_zero`).
        """
        if self.is_zero:  # the others get no value, only the word that rank 0 is done
            return self.from_rank_zero(name, work, lambda _: None)
        self.from_rank_zero(name, lambda: None)
        return work()


def current() -> World | None:
    """The world of the run in progress in this process (None outside a run's processes).

    Set by :func:`~dacapo_hydra.training.process.launch.processes` (:func:`set_current`).
    """
    return _CURRENT


def set_current(world: World | None) -> None:
    """Make `world` the run in progress in this process (None: no run)."""
    global _CURRENT
    _CURRENT = world


def on_rank_zero(
    trainer: pl.Trainer,
    name: str,
    compute: Callable[[], T],
    encode: Callable[[T], Any] | None = None,
    decode: Callable[[Any], T] | None = None,
) -> T | None:
    """Inside a Trainer's hooks: `compute()` on global rank 0, its result on every rank.

    Uses the run's store (:meth:`World.from_rank_zero`: signed JSON, the others wait
    without a timeout); with a process group made elsewhere, Lightning's broadcast
    (which times out as its collectives do).

    Args:
        trainer: the running Trainer.
        name: what is computed.
        compute: the work of rank 0.
        encode: the result as JSON-able data (:meth:`World.from_rank_zero`).
        decode: the inverse of `encode`.

    """
    world = _CURRENT
    if trainer.world_size == 1:
        return compute()
    if world is not None and world.store is not None and world.size == trainer.world_size:
        return world.from_rank_zero(name, compute, encode, decode)
    value = compute() if trainer.is_global_zero else None
    return trainer.strategy.broadcast(value, src=0)


def _accelerator(accelerator: Any) -> str:
    """`cpu`, `cuda` or `mps` for a Lightning accelerator flag (`auto`, `gpu`, an instance)."""
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
    if strategy not in StrategyRegistry:
        return "popen", False  # Lightning names it in its own error
    entry = StrategyRegistry[strategy]
    single = entry["strategy"].__name__.startswith("Single")
    return str(entry["init_params"].get("start_method", "popen")), single


def _devices_per_node(accelerator: str, devices: Any) -> tuple[int, list[int] | None]:
    """(processes per node, the CUDA device ids) for Lightning's `devices` flag; checked."""
    try:
        if accelerator == "cuda":
            count = CUDAAccelerator.auto_device_count()
            wanted = count if devices in ("auto", -1, "-1") else devices
            device_ids = list(CUDAAccelerator.parse_devices(wanted) or [])
            return len(device_ids), device_ids
        if accelerator == "cpu":
            return CPUAccelerator.parse_devices(1 if devices == "auto" else devices), None
        return 1, None
    except Exception as err:  # Lightning's MisconfigurationException, TypeError, ...
        raise ConfigError(f"lightning.devices={devices!r}: {' '.join(str(err).split())}") from err


def _placed(num_nodes: int, per_node: int, common: dict[str, Any]) -> World:
    """The place of this process among several: from a cluster, `LOCAL_RANK`, or dacapo's own.

    Raises:
        ConfigError: naming `lightning.num_nodes` (several nodes without a cluster).

    """
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


def plan(arguments: dict[str, Any]) -> World:
    """The processes `pl.Trainer(**arguments)` trains on, and this one's rank; checked.

    Args:
        arguments: the Trainer's arguments
            (:func:`~dacapo_hydra.config.lightning.trainer_arguments`).

    Raises:
        ConfigError: naming `lightning.devices`, `lightning.strategy` (a strategy that
            spawns its own processes) or `lightning.num_nodes` (several nodes without a
            cluster).

    """
    accelerator = _accelerator(arguments.get("accelerator", "auto"))
    num_nodes = int(arguments.get("num_nodes") or 1)
    strategy = arguments.get("strategy", "auto")
    start_method, single = _strategy_start_method(strategy)
    per_node, device_ids = _devices_per_node(accelerator, arguments.get("devices", "auto"))
    if single:
        per_node = 1
    size = per_node * num_nodes
    backend = "nccl" if accelerator == "cuda" else "gloo"
    if size == 1:
        return World(backend=backend, device_ids=device_ids)
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
    return _placed(num_nodes, per_node, common)
