"""Schemas of the `architecture` group, one per kind of network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class CNNectomeUNetConfig:
    """DaCapo's CNNectomeUNet: valid convolutions, shapes in voxels."""

    _target_: str = "dacapo_hydra.architectures.cnnectome_unet.CNNectomeUNet"
    input_shape: Any = MISSING
    eval_input_shape: Any = None
    num_fmaps: int = 12
    fmap_inc_factor: int = 5
    fmaps_out: int | None = None
    downsample_factors: list[Any] = field(default_factory=lambda: [2])
    kernel_size: int = 3
    convs_per_level: int = 2
    upsample: str = "transposed"
    batch_norm: bool = False


# Options of /schema/architecture/<name>, which each YAML of the group extends.
SCHEMAS = {"cnnectome_unet": CNNectomeUNetConfig}
