"""Schema of the `trainer` group: batch, loader, optimiser, schedule, augmentations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AugmentConfig:
    """MONAI augmentations, each with its probability."""

    mirror_prob: float = 0.5
    transpose_prob: float = 0.5
    intensity_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1


@dataclass
class TrainerConfig:
    """Batch size, loader workers, optimiser, schedule, augmentations."""

    batch_size: int = 2
    num_workers: int = 0
    optimizer: Any = field(
        default_factory=lambda: {
            "_target_": "torch.optim.RAdam",
            "_partial_": True,
            "lr": 1e-3,
            "decoupled_weight_decay": True,
            "weight_decay": 1e-2,
        }
    )
    scheduler: Any = None
    gradient_clip_val: float | None = None
    precision: str = "32-true"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# Options of /schema/trainer/<name>, which each YAML of the group extends.
SCHEMAS = {"trainer": TrainerConfig}
