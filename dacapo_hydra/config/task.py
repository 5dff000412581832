"""Schemas of the `task` group, one per task."""

from __future__ import annotations

from dataclasses import dataclass


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


# Options of /schema/task/<name>, which each YAML of the group extends.
SCHEMAS = {"distance": DistanceTaskConfig, "affinities": AffinitiesTaskConfig}
