"""Dataclass schemas for every config group.

The top-level :class:`Config` is the schema of `conf/config.yaml`; each group
option's YAML starts from its own schema (`/schema/<group>/<kind>`) so a typo or a
value of the wrong type fails at composition, naming the key. Fields whose value
may be a number or a per-axis list (shapes, factors) are typed `Any` and checked
by the room that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ArraySourceConfig:
    """One zarr array: a container and a dataset path inside it."""

    container: str = MISSING
    dataset: str = MISSING
    voxel_size: list[float] | None = None
    offset: list[float] | None = None


@dataclass
class DatasetConfig:
    """A training or validation dataset: raw, ground truth, optional mask."""

    name: str = MISSING
    raw: ArraySourceConfig = MISSING
    gt: ArraySourceConfig = MISSING
    mask: ArraySourceConfig | None = None
    weight: float = 1.0


@dataclass
class NormalizeConfig:
    """Raw intensities map linearly from [min, max] to [0, 1]."""

    min: float = 0.0
    max: float = 255.0


@dataclass
class SyntheticConfig:
    """Generate the container with the synthetic generator when it is missing."""

    container: str = MISSING
    dims: int = 3
    shape: list[int] | None = None
    voxel_size: list[float] | None = None
    offset: list[float] | None = None
    seed: int = 0
    chunk: int = 32


@dataclass
class DataSplitConfig:
    """Where the data is and which volumes train and validate."""

    dims: int = 3
    train: list[DatasetConfig] = MISSING
    validate: list[DatasetConfig] = field(default_factory=list)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    pad_mode: str = "reflect"
    synthetic: SyntheticConfig | None = None


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


@dataclass
class DistanceTaskConfig:
    """Signed distance to object boundaries, tanh-scaled (DaCapo's DistanceTask)."""

    _target_: str = "dacapo_hydra.tasks.distance.DistanceTask"
    scale_factor: float = 50.0
    clip_distance: float = 100.0
    tol_distance: float = 40.0
    mask_distances: bool = True
    clip_min: float = 0.05
    clip_max: float = 0.95


@dataclass
class AffinitiesTaskConfig:
    """Affinities between voxels at the neighbourhood's offsets (voxels, z y x)."""

    _target_: str = "dacapo_hydra.tasks.affinities.AffinitiesTask"
    neighborhood: list[list[int]] | None = None
    clip_min: float = 0.05
    clip_max: float = 0.95
    background_as_object: bool = False


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


@dataclass
class PathsConfig:
    """Where runs and cached data go."""

    output_dir: str = "outputs"
    data_dir: str = "outputs/data"


@dataclass
class MlflowConfig:
    """MLflow store: a sqlite tracking database and a local artifact folder."""

    tracking_uri: str = MISSING
    artifact_location: str = MISSING
    experiment_name: str = "dacapo"


@dataclass
class Config:
    """A run: one option of each group, a start point and a stopping criterion."""

    datasplit: DataSplitConfig = MISSING
    architecture: Any = MISSING
    task: Any = MISSING
    trainer: TrainerConfig = MISSING
    iterations: int = 300
    validation_interval: int = 100
    validation_samples: int = 4
    seed: int = 0
    start: str | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    run_name: str | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema/datasplit", name="datasplit", node=DataSplitConfig)
    cs.store(group="schema/architecture", name="cnnectome_unet", node=CNNectomeUNetConfig)
    cs.store(group="schema/task", name="distance", node=DistanceTaskConfig)
    cs.store(group="schema/task", name="affinities", node=AffinitiesTaskConfig)
    cs.store(group="schema/trainer", name="trainer", node=TrainerConfig)
