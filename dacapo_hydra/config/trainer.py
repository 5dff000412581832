"""Schema of the `trainer` group: batch, loader, optimiser, schedule, augmentations.

This is DaCapo's trainer, not Lightning's `pl.Trainer`, whose arguments are the
`lightning` group's (:mod:`dacapo_hydra.config.lightning`).

Augmentation lengths (elastic spacing and jitter, blur sigmas, misalignment
shift) are lengths as :mod:`dacapo_hydra.config.units` reads them: a number is
nm, a string has a unit (`"50nm"`, `"0.5um"`, `"12.5vx"`). The defaults are in
voxels of the raw data (its smallest voxel size), so they suit 4 nm EM and 250 nm
light microscopy alike; at 8 nm they equal the nm values tuned for EM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class ElasticConfig:
    """Elastic deformation on a control-point grid (gunpowder's ElasticAugment).

    The warp is physical: it acts in world units, so one length is the same
    number of nm along every axis. On anisotropic data a voxel length counts
    voxels of the smallest size: at 1000 x 250 x 250 nm, `"12.5vx"` is 3125 nm
    along z, y and x alike (3.1 sections in z). A list (z, y, x) gives one length
    per axis, each in its own axis' voxels: `["2vx", "12.5vx", "12.5vx"]` is 2000,
    3125, 3125 nm there. The spacing must be at least one voxel and fit inside
    the raw crop (one length: its longest axis); the jitter may be small, not
    negative.
    """

    prob: float = 0.0
    # Between control points: 100 nm at 8 nm, 3125 nm at 250 nm.
    control_point_spacing: Any = "12.5vx"
    # Standard deviation of a control point's displacement: 10 nm at 8 nm, 312.5 nm at 250 nm.
    jitter_sigma: Any = "1.25vx"
    # Between control points: linear, or cubic (a C² smooth interpolating cubic
    # B-spline, as gunpowder smooths its field; same control values, costs a little more).
    interpolation: str = "linear"


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
    """Gaussian blur of raw, sigma drawn from [sigma_min, sigma_max] (lengths, or one per axis)."""

    prob: float = 0.0
    sigma_min: Any = "0.5vx"  # 4 nm at 8 nm, 125 nm at 250 nm
    sigma_max: Any = "1.5vx"  # 12 nm at 8 nm, 375 nm at 250 nm


@dataclass
class MissingSectionConfig:
    """Whole z sections of raw blanked, each with probability `prob` (3D only)."""

    prob: float = 0.0
    value: float = 0.0


@dataclass
class MisalignmentConfig:
    """A z section (slip) or all from it on (translation) shifted in y,x (3D only).

    `max_shift` is a length in y,x (voxels are in-plane ones), from one voxel to
    the crop's extent; shifts are drawn in whole voxels.
    """

    prob: float = 0.0
    max_shift: Any = "4vx"  # 32 nm at 8 nm, 1000 nm at 250 nm
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
    """DaCapo's trainer: batch size, loader workers, optimiser, schedule, augmentations.

    Not Lightning's `pl.Trainer`: the training loop's settings (accelerator,
    devices, precision, gradient clipping, accumulation, ...) are the `lightning`
    group's, passed whole to `pl.Trainer`.

    `optimizer` and `scheduler` are free Hydra `_partial_` targets: a
    `torch.optim.Optimizer` and a `torch.optim.lr_scheduler.LRScheduler` subclass
    with their own arguments, nothing merged in from here (the run completes them
    with the parameters, and the optimiser). Before a run exists each given
    argument is checked against the target's signature
    (:func:`~dacapo_hydra.config.targets.optimizer_factories`). DaCapo's default
    (`trainer=default`) is RAdam at lr 1e-3 with decoupled weight decay and a
    linear warm-up. `num_workers` is the loader processes per training process, `auto`
    by default (:func:`~dacapo_hydra.devices.loader_workers`: min(CPUs per device - 1,
    8)); each prepares `prefetch_factor` batches ahead and keeps up to `chunk_cache_mb`
    MiB of decoded training chunks (:mod:`~dacapo_hydra.data.chunk_cache`; 0: none).
    Precision and gradient clipping are Lightning Trainer settings: `lightning.precision`,
    `lightning.gradient_clip_val`.
    """

    batch_size: int = 2
    num_workers: Any = "auto"
    prefetch_factor: int = 2
    chunk_cache_mb: int = 512
    optimizer: Any = MISSING
    scheduler: Any = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# Options of /schema/trainer/<name>, which each YAML of the group extends.
SCHEMAS = {"trainer": TrainerConfig}
