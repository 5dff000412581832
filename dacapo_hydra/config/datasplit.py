"""Schema of the `datasplit` group: where the data is, train and validate datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class DatasetConfig:
    """A training or validation dataset: raw, ground truth, optional mask.

    raw/gt/mask are array specs: `{container, dataset}` or a transform
    `{type: binarize, source: {...}, ...}`, hence typed Any and checked when opened.
    `sample_points` are world positions (nm) for the `points` sampling strategy.

    The ground truth must hold an object (a nonzero label where the mask is
    nonzero) or training is refused before it starts: an empty one teaches
    nothing and scores a perfect dice. `allow_empty: true` admits a training
    dataset of negative examples (another training dataset must hold objects);
    validation datasets must always hold objects.
    """

    name: str = MISSING
    raw: Any = MISSING
    gt: Any = MISSING
    mask: Any = None
    weight: float = 1.0
    sample_points: list[list[float]] | None = None
    allow_empty: bool = False


@dataclass
class NormalizeConfig:
    """How raw intensities become network input: one affine map `(x - lo) / (hi - lo)`.

    `mode` picks how `lo`/`hi` are found; values left null are measured once, on
    a bounded sample of the training raw (2**21 voxels by default, spread over
    every training volume), when the run is built, and stored with the
    checkpoint (see dacapo_hydra.data.normalize):

    - `percentile` (default): the `lower` (1.0) and `upper` (99.8) percentiles;
      fits uint8 and uint16 data alike.
    - `minmax`: `min` and `max` (the sample's where null); a `max` far below
      the data (e.g. 255 on uint16) is refused.
    - `meanstd`: `mean` maps to 0 and `mean + std` to 1 (measured where null).

    Options of another mode are refused, naming the key.
    """

    mode: str = "percentile"
    min: float | None = None
    max: float | None = None
    lower: float | None = None
    upper: float | None = None
    mean: float | None = None
    std: float | None = None
    sample_voxels: int = 2**21


@dataclass
class SamplingConfig:
    """How crop positions are drawn: uniform, reject, integral_mask or points."""

    strategy: str = "uniform"
    min_masked: float = 0.5
    max_tries: int = 100


@dataclass
class LayoutConfig:
    """DaCapo's convention layout: `path` holds train/test groups of raw/labels/mask."""

    path: str = MISSING
    train_group: str = "train"
    validate_group: str = "test"
    raw_name: str = "raw"
    gt_name: str = "labels"
    mask_name: str = "mask"


@dataclass
class SyntheticConfig:
    """Generate the container with the synthetic generator when it is missing.

    `kind` picks the generator: `em` (EM-like cells, uint8) or `nuclei` (light-microscopy
    nuclei, uint16); shape and voxel size default to the kind's own when null.
    `cell_diameter` (nm, `em` only) sizes the cells in world units; `test: true` adds a
    held-out `test/` volume that training and validation never read.
    """

    container: str = MISSING
    kind: str = "em"
    dims: int = 3
    shape: list[int] | None = None
    voxel_size: list[float] | None = None
    offset: list[float] | None = None
    seed: int = 0
    chunk: int = 32
    cell_diameter: float | None = None
    test: bool = False


@dataclass
class DataSplitConfig:
    """Where the data is and which volumes train and validate.

    `normalize: null` leaves raw as read (for a raw spec that normalises itself).
    `input_voxel_size`/`output_voxel_size` pick the multiscale level of raw and of
    gt/mask where a spec gives no `scale`. `auto_plan: false` marks a demo: `plan=auto`
    keeps the run's own (short) settings.
    """

    dims: int = 3
    train: list[DatasetConfig] = field(default_factory=list)
    validate: list[DatasetConfig] = field(default_factory=list)
    normalize: NormalizeConfig | None = field(default_factory=NormalizeConfig)
    pad_mode: str = "reflect"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    input_voxel_size: list[float] | None = None
    output_voxel_size: list[float] | None = None
    layout: LayoutConfig | None = None
    synthetic: SyntheticConfig | None = None
    auto_plan: bool = True


# Options of /schema/datasplit/<name>, which each YAML of the group extends.
SCHEMAS = {"datasplit": DataSplitConfig}
