"""Schemas of the `task` group, one per task.

Lengths (distances, thresholds, seeds) are nm or strings with a unit ("6vx", "1.5um");
null lengths follow the data (see each task). Neighbourhood offsets are in voxels
(z, y, x), minimum object sizes in voxels.
`class_ids` null means: class i is label i + 1, or every non-zero label when there
is a single class (instance ground truth). `criterion` null keeps the task's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class ScaledDistanceTaskConfig:
    """Options shared by the tasks that learn tanh-scaled distances per class.

    Not a group option itself: each subclass sets `_target_` (which stays the first
    key) and adds its own options after these.
    """

    _target_: str = MISSING
    channels: list[str] = field(default_factory=lambda: ["foreground"])
    class_ids: list[list[int]] | None = None
    scale_factor: Any = None  # null: the typical object's radius (measured), else 6 voxels
    clip_distance: Any = None  # null: 2 x scale_factor
    tol_distance: Any = None  # null: 0.8 x scale_factor
    mask_distances: bool = True
    clip_min: float = 0.05
    clip_max: float = 0.95


@dataclass
class DistanceTaskConfig(ScaledDistanceTaskConfig):
    """Signed distance to class boundaries, tanh-scaled (DaCapo's DistanceTask)."""

    _target_: str = "dacapo_hydra.tasks.distance.DistanceTask"
    thresholds: list[Any] | None = None
    instances: bool = False
    seed_h: list[Any] | None = None
    min_sizes: list[int] | None = None
    foreground_distance: Any = None
    criterion: str | None = None


@dataclass
class AffinitiesTaskConfig:
    """Affinities between voxels at the neighbourhood's offsets, optionally with LSDs."""

    _target_: str = "dacapo_hydra.tasks.affinities.AffinitiesTask"
    neighborhood: list[list[int]] | None = None
    clip_min: float = 0.05
    clip_max: float = 0.95
    background_as_object: bool = False
    lsds: bool = False
    num_lsd_voxels: int = 10
    downsample_lsds: int = 1
    lsds_to_affs_weight_ratio: float = 1.0
    lsd_clip_min: float = 0.05
    lsd_clip_max: float = 0.95
    # Post-processing routes, each a `_target_` node of a Route with the values it sweeps;
    # null: the task's default routes. Checked when built (the key of a bad one named).
    routes: list[Any] | None = None
    min_sizes: list[int] | None = None
    criterion: str | None = None


@dataclass
class OneHotTaskConfig:
    """One class per voxel by softmax cross-entropy; the first class is background."""

    _target_: str = "dacapo_hydra.tasks.one_hot.OneHotTask"
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    class_ids: list[list[int]] | None = None
    clip_min: float = 0.05
    clip_max: float = 0.95
    tol_distance: Any = "5vx"
    clip_distance: Any = "12.5vx"
    criterion: str | None = None


@dataclass
class InnerDistanceTaskConfig(ScaledDistanceTaskConfig):
    """Distance from inside each object to its boundary, for seeded watershed."""

    _target_: str = "dacapo_hydra.tasks.inner_distance.InnerDistanceTask"
    seed_distances: list[Any] | None = None
    min_sizes: list[int] | None = None
    foreground_distance: Any = None
    criterion: str | None = None


@dataclass
class HotDistanceTaskConfig(ScaledDistanceTaskConfig):
    """One-hot masks and signed distances learned together."""

    _target_: str = "dacapo_hydra.tasks.hot_distance.HotDistanceTask"
    hot_thresholds: list[float] = field(default_factory=lambda: [0.5])
    thresholds: list[Any] | None = None
    instances: bool = False
    seed_h: list[Any] | None = None
    min_sizes: list[int] | None = None
    criterion: str | None = None


@dataclass
class DummyTaskConfig:
    """A trivial task for tests."""

    _target_: str = "dacapo_hydra.tasks.dummy.DummyTask"


# Options of /schema/task/<name>, which each YAML of the group extends.
SCHEMAS = {
    "distance": DistanceTaskConfig,
    "affinities": AffinitiesTaskConfig,
    "one_hot": OneHotTaskConfig,
    "inner_distance": InnerDistanceTaskConfig,
    "hot_distance": HotDistanceTaskConfig,
    "dummy": DummyTaskConfig,
}
