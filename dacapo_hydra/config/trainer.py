"""Schema of the `trainer` group: batch, loader, optimiser, schedule, augmentations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ElasticConfig:
    """Elastic deformation on a control-point grid (gunpowder's ElasticAugment)."""

    prob: float = 0.0
    control_point_spacing: Any = 100.0  # nm between control points (number or per axis)
    jitter_sigma: Any = 10.0  # nm, standard deviation of control point displacement


@dataclass
class RotationConfig:
    """Random rotation about the crop's centre, applied with the elastic warp."""

    prob: float = 0.0
    max_degrees: float = 180.0
    planes: str = "yx"  # yx (anisotropic EM) or all


@dataclass
class GammaConfig:
    """Gamma (contrast) change of raw, MONAI's RandAdjustContrast."""

    prob: float = 0.0
    min: float = 0.7
    max: float = 1.5


@dataclass
class NoiseConfig:
    """Additive Gaussian noise on normalised raw, std drawn up to `std`."""

    prob: float = 0.0
    std: float = 0.05


@dataclass
class BlurConfig:
    """Gaussian blur of raw, sigma in nm drawn from [sigma_min, sigma_max]."""

    prob: float = 0.0
    sigma_min: float = 4.0
    sigma_max: float = 12.0


@dataclass
class MissingSectionConfig:
    """Whole z sections of raw blanked, each with probability `prob` (3D only)."""

    prob: float = 0.0
    value: float = 0.0


@dataclass
class MisalignmentConfig:
    """A z section (slip) or all from it on (translation) shifted in y,x (3D only)."""

    prob: float = 0.0
    max_shift: float = 32.0  # nm
    mode: str = "slip"


@dataclass
class AugmentConfig:
    """Augmentations, each with its probability (0 turns it off)."""

    mirror_prob: float = 0.5
    transpose_prob: float = 0.5
    intensity_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    elastic: ElasticConfig = field(default_factory=ElasticConfig)
    rotation: RotationConfig = field(default_factory=RotationConfig)
    gamma: GammaConfig = field(default_factory=GammaConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    missing_section: MissingSectionConfig = field(default_factory=MissingSectionConfig)
    misalignment: MisalignmentConfig = field(default_factory=MisalignmentConfig)


@dataclass
class TrainerConfig:
    """Batch size, loader workers, optimiser, schedule, gradient clipping, precision, augmentations.

    `optimizer` and `scheduler` are Hydra `_partial_` targets: the run completes
    them with the parameters (and the optimiser). DaCapo's default is RAdam at
    lr 1e-3 with decoupled weight decay and a linear warm-up.
    """

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
