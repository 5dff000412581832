"""What each process gets: precision, DataLoader workers, and the GPU of each Dask worker.

- `lightning.precision: auto` is `bf16-mixed` where CUDA is used and supports
  bfloat16, else `32-true` (:func:`resolve_precision`).
- `trainer.num_workers: auto` is `min(cpus_per_device - 1, 8)` loader processes per
  training process (:func:`loader_workers`), one CPU left for the training loop:
  `cpus_per_device` is `$SLURM_CPUS_PER_TASK` when SLURM started one process per
  device, else the CPUs this process may run on divided by the training processes on
  this machine (:func:`cpus_per_device`).
- `dacapo-predict`/`dacapo-apply --devices 0,1` give the Dask workers GPUs round-robin,
  worker i seeing only GPU `devices[i % len(devices)]` (`CUDA_VISIBLE_DEVICES` set
  before the worker process starts, as dask-cuda's `LocalCUDACluster` does):
  :func:`worker_device`, :class:`DeviceCluster`.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import re
from collections.abc import Sequence
from typing import Any

from dacapo_hydra.errors import ConfigError

MAX_AUTO_WORKERS = 8
_DEVICE = re.compile(r"^(\d+|GPU-[0-9a-fA-F-]+|MIG-[\w/-]+)$")


def resolve_precision(precision: Any, accelerator: Any = "auto") -> Any:
    """`lightning.precision`, with `auto` made concrete for this machine.

    Example:
        >>> resolve_precision("16-mixed")
        '16-mixed'
        >>> resolve_precision("auto", accelerator="cpu")
        '32-true'

    """
    if precision != "auto":
        return precision
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__
    if name.lower() in ("auto", "gpu", "cuda") or "cuda" in name.lower():
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
    return "32-true"


def cpus_per_device(processes_per_node: int = 1, slurm_per_task: bool = False) -> int:
    """CPUs one training process may use for itself and its loader workers.

    Args:
        processes_per_node: training processes sharing this machine's CPUs.
        slurm_per_task: SLURM started the processes, each with `--cpus-per-task` of its own.

    """
    if slurm_per_task and os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    # The CPUs this process may run on (a SLURM or cgroup allotment), else the machine's.
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return max(1, cpus // max(1, processes_per_node))


def loader_workers(setting: Any, cpus: int) -> int:
    """DataLoader workers for `trainer.num_workers` (`auto` or a count) and `cpus` per device.

    Example:
        >>> loader_workers("auto", 2), loader_workers("auto", 16), loader_workers("auto", 1)
        (1, 8, 0)
        >>> loader_workers(3, 16)
        3

    Raises:
        ConfigError: naming `trainer.num_workers`.

    """
    if setting == "auto":
        # Loader processes are forked: in a process whose start method is not fork (a
        # joblib/loky sweep job), the loader would have to pickle the dataset; load in-process.
        if multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
            return 0
        return max(0, min(cpus - 1, MAX_AUTO_WORKERS))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ConfigError(
            f"trainer.num_workers={setting!r}: expected auto or a count of loader processes (0: "
            "load in the training process)"
        )
    return setting


def trainer_cpus(trainer: Any) -> int:
    """:func:`cpus_per_device` for a running Lightning Trainer (1 process without one)."""
    if trainer is None:
        return cpus_per_device(1)
    from lightning_fabric.plugins.environments import SLURMEnvironment

    environment = getattr(trainer.strategy, "cluster_environment", None)
    return cpus_per_device(trainer.num_devices, isinstance(environment, SLURMEnvironment))


def parse_devices(text: str | None) -> list[str] | None:
    """The GPUs of `--devices`: `0,1`, GPU UUIDs, or `all` (every GPU this machine has).

    Example:
        >>> parse_devices("0,1")
        ['0', '1']
        >>> parse_devices(None) is None
        True

    Raises:
        ConfigError: naming `--devices` and the value.

    """
    if text is None:
        return None
    if text.strip() == "all":
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError("--devices all: this machine has no CUDA GPU")
        return [str(i) for i in range(count)]
    devices = [part.strip() for part in text.split(",")]
    if not devices or not all(_DEVICE.match(d) for d in devices):
        raise ConfigError(
            f"--devices {text!r}: expected GPU indices (or UUIDs) separated by commas, e.g. 0,1, "
            "or all"
        )
    return devices


def worker_device(index: int, devices: Sequence[str]) -> str:
    """The GPU of Dask worker `index`: round-robin over `devices`.

    Example:
        >>> [worker_device(i, ["0", "1"]) for i in range(5)]
        ['0', '1', '0', '1', '0']

    """
    if not devices:
        raise ValueError("no devices to assign")
    return devices[index % len(devices)]


def _cluster_class() -> type:
    from dask.distributed import LocalCluster

    class DeviceCluster(LocalCluster):
        """A Dask `LocalCluster` whose worker i sees only GPU `worker_device(i, devices)`.

        Workers are processes with one thread; `CUDA_VISIBLE_DEVICES` is in each
        worker's environment from its start (Dask's `Nanny(env=...)`), so CUDA in the
        worker finds that GPU as `cuda:0`.
        """

        def __init__(self, n_workers: int, devices: Sequence[str], **kwargs: Any) -> None:
            self.devices = list(devices)
            super().__init__(
                n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0", **kwargs
            )
            # LocalCluster makes its first workers without new_worker_spec: scale from none.
            self.scale(n_workers)
            self.wait_for_workers(n_workers)

        def new_worker_spec(self) -> dict[Any, dict[str, Any]]:
            ((name, spec),) = super().new_worker_spec().items()
            index = name if isinstance(name, int) else len(self.worker_spec)
            spec = copy.deepcopy(spec)
            options = spec.setdefault("options", {})
            env = dict(options.get("env") or {})
            env["CUDA_VISIBLE_DEVICES"] = worker_device(index, self.devices)
            options["env"] = env
            return {name: spec}

    return DeviceCluster


def device_cluster(workers: int, devices: Sequence[str]) -> Any:
    """A local Dask cluster of `workers` processes, GPUs assigned by :func:`worker_device`."""
    return _cluster_class()(workers, devices)
