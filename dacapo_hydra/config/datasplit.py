"""Schema of the `datasplit` group: where the data is, train and validate datasets."""

from __future__ import annotations

from dataclasses import dataclass, field

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


# Options of /schema/datasplit/<name>, which each YAML of the group extends.
SCHEMAS = {"datasplit": DataSplitConfig}
