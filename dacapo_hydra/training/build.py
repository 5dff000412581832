"""A run's parts from a composed config: datasplit, architecture, task, module, loaders.

Everything the config names is opened and checked in :func:`build` before an
MLflow run exists, so bad input fails with one message and leaves no run behind.
No task- or data-specific branching here: each room builds its own objects. The
loaders (:mod:`dacapo_hydra.data.datamodule`) know neither networks nor tasks:
they get the network's shapes as numbers (:func:`crop_shapes`) and the task's
targets as a callable (:class:`TaskTargets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hydra
import numpy as np
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra import tracking
from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.config.targets import optimizer_factories
from dacapo_hydra.data.checks import check_split, raw_margin
from dacapo_hydra.data.datamodule import VolumeDataModule
from dacapo_hydra.data.datasplit import DataSplit
from dacapo_hydra.data.sampler import CropShapes
from dacapo_hydra.data.statistics import typical_object_radius
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.tasks.instances.route import check_route_nodes
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.starts import load_weights


@dataclass
class Built:
    """The objects a run is made of."""

    split: DataSplit
    architecture: Architecture
    task: Task
    module: RunModule
    datamodule: VolumeDataModule


class TaskTargets:
    """A task's targets as the loaders take them: (gt, mask) -> `target` and `weight` arrays.

    A class rather than a closure so that loader workers started by `spawn` can
    pickle it.

    Args:
        task: makes the targets and weights (:meth:`~dacapo_hydra.tasks.base.Task.targets`).

    """

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self, gt: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The crop's `target` and `weight`, each (channels, *spatial)."""
        target, weight = self.task.targets(gt, mask)
        return {"target": target, "weight": weight}


def crop_shapes(architecture: Architecture, voxel_size: tuple[float, ...]) -> CropShapes:
    """The network's training input and output shapes, as numbers for the crop sampler.

    Args:
        architecture: gives the input shape, the output shape it leads to and the
            upsampling factor (super-resolution: a finer output voxel size).
        voxel_size: the raw voxel size, nm.

    """
    factor = getattr(architecture, "upsample_factor", (1,) * len(voxel_size))
    return CropShapes(
        tuple(architecture.input_shape),
        tuple(architecture.output_shape(architecture.input_shape)),
        tuple(voxel_size),
        tuple(v / f for v, f in zip(voxel_size, factor, strict=True)),
    )


def tracking_store(cfg: DictConfig) -> tuple[str, str]:
    """The run's MLflow store: (tracking URI, artifact location), checked.

    Raises:
        ConfigError: naming the `mlflow` key at fault.

    """
    try:
        return tracking.resolve_store(cfg.mlflow.tracking_uri, cfg.mlflow.artifact_location)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def build(cfg: DictConfig, data_seed: int | None = None, tracking_uri: str | None = None) -> Built:
    """Open the datasplit and build architecture, task, module and data module.

    Args:
        cfg: the composed run config.
        data_seed: seed of the crop streams (default `cfg.seed`; a resumed run
            draws new crops).
        tracking_uri: MLflow store for a start given as `run:<id>`.

    Raises:
        ConfigError: for any bad input, with the key or file at fault named.

    """
    try:
        return _build(cfg, cfg.seed if data_seed is None else data_seed, tracking_uri)
    except ConfigError:
        raise
    except InstantiationException as err:
        # Hydra wraps the constructor's error; its message is the one that names the key.
        cause = err.__cause__ or err
        raise ConfigError(str(cause.args[0] if cause.args else cause)) from err
    except (ValueError, KeyError, FileNotFoundError, TypeError) as err:
        raise ConfigError(str(err.args[0] if err.args else repr(err))) from err


def _build(cfg: DictConfig, data_seed: int, tracking_uri: str | None) -> Built:
    for key in ("iterations", "validation_interval"):
        if cfg[key] < 1:
            raise ValueError(f"{key} must be at least 1, got {cfg[key]}")
    optimizer, scheduler = optimizer_factories(OmegaConf.to_container(cfg.trainer, resolve=True))
    check_route_nodes(cfg.task)
    split = DataSplit.from_config(cfg.datasplit)
    architecture: Architecture = hydra.utils.instantiate(
        cfg.architecture, dims=split.dims, in_channels=split.in_channels
    )
    shapes = (architecture.input_shape, architecture.eval_input_shape)
    check_split(split, raw_margin(split.voxel_size, *shapes))  # the data, before a run exists
    radius = typical_object_radius([(d.gt, d.labelled_roi) for d in split.train])
    task: Task = hydra.utils.instantiate(
        cfg.task, dims=split.dims, voxel_size=split.gt_voxel_size, object_radius=radius
    )
    output_shape = architecture.output_shape(architecture.input_shape)
    task.check_crop([s * v for s, v in zip(output_shape, split.gt_voxel_size, strict=True)])
    config = OmegaConf.to_container(cfg, resolve=True)
    meta: dict[str, Any] = {
        "dims": split.dims,
        "in_channels": split.in_channels,
        "voxel_size": list(split.voxel_size),
        "gt_voxel_size": list(split.gt_voxel_size),
        "object_radius": radius,
        # Measured once here; validation, prediction and export read these values back.
        "normalize": split.normalize.to_dict(),
    }
    module = RunModule(architecture, task, optimizer, scheduler, config=config, meta=meta)
    if cfg.start:
        uri = tracking_uri or tracking_store(cfg)[0]
        load_weights(module, tracking.resolve_start(str(cfg.start), uri))
    datamodule = VolumeDataModule.build(
        split,
        crop_shapes(architecture, split.voxel_size),
        TaskTargets(task),
        cfg.trainer,
        data_seed,
        cfg.validation_samples,
    )
    return Built(split, architecture, task, module, datamodule)
