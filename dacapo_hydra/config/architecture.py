"""Schemas of the `architecture` group, one per kind of network.

Shapes and factors are `Any`: an int (the same on every axis) or a per-axis
list, checked by the architecture when it is built (with the nearest valid
shapes in the message when a shape can't work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class CNNectomeUNetConfig:
    """DaCapo's CNNectomeUNet: valid (or same) convolutions, shapes in voxels."""

    _target_: str = "dacapo_hydra.architectures.cnnectome_unet.CNNectomeUNet"
    input_shape: Any = MISSING
    eval_input_shape: Any = None
    num_fmaps: int = 12
    fmap_inc_factor: int = 5
    fmaps_in: int | None = None
    fmaps_out: int | None = None
    downsample_factors: list[Any] = field(default_factory=lambda: [2])
    kernel_size: int = 3
    convs_per_level: int = 2
    kernel_size_down: list[Any] | None = None
    kernel_size_up: list[Any] | None = None
    upsample: str = "transposed"
    padding: str = "valid"
    batch_norm: bool = False
    attention: bool = False
    upsample_factors: list[Any] = field(default_factory=list)
    trainable: str | None = None


@dataclass
class MonaiNetworkConfig:
    """A MONAI network: `network._target_` and its arguments ('same' padding)."""

    _target_: str = "dacapo_hydra.architectures.monai_net.MonaiNetwork"
    _recursive_: bool = False
    network: Any = MISSING
    input_shape: Any = MISSING
    eval_input_shape: Any = None
    fmaps_out: int = 12
    divisor: Any = None
    trainable: str | None = None


@dataclass
class WrappedModuleConfig:
    """Any nn.Module (`module._target_`) or saved program (`path`), e.g. to fine-tune."""

    _target_: str = "dacapo_hydra.architectures.wrapped.WrappedModule"
    _recursive_: bool = False
    module: Any = None
    path: str | None = None
    input_shape: Any = MISSING
    eval_input_shape: Any = None
    divisor: Any = None
    upsample_factor: Any = 1
    trainable: str | None = None


# Options of /schema/architecture/<name>, which each YAML of the group extends.
SCHEMAS = {
    "cnnectome_unet": CNNectomeUNetConfig,
    "monai": MonaiNetworkConfig,
    "module": WrappedModuleConfig,
}
