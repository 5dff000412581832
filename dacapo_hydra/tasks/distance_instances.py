"""Instances from predicted distances, shared by the distance-type tasks.

The route: the predicted distance (target units) goes back to nm, the foreground
is where it exceeds `foreground_distance`, seeds are its h-maxima (parameter `h`,
nm) or the regions above a seed distance (parameter `seed_distance`, nm), grown by
watershed (:func:`~dacapo_hydra.tasks.instances.distance_watershed.distance_watershed`),
and objects under `min_size` voxels go. Scored with the instance scores per class.

Tasks that learn the distance to the boundary of the foreground as a whole
(`distance`, `hot_distance`) also sweep `seeds: mask`: the same watershed on the
distance transform of the predicted foreground. A network sees only its field of
view, so its predicted distance levels off inside objects wider than that, and the
neck between two such touching objects disappears from it; the distance transform
of the predicted mask keeps the neck (the classic shape-based split). Validation
picks whichever scores better.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from dacapo_hydra.config.units import Length, to_nm
from dacapo_hydra.evaluation.instance import INSTANCE_SCORE_DIRECTIONS, instance_scores
from dacapo_hydra.evaluation.per_class import class_score_directions, merge_class_scores
from dacapo_hydra.tasks.base import Params
from dacapo_hydra.tasks.classes import ClassMap
from dacapo_hydra.tasks.instances.distance_watershed import (
    distance_watershed,
    h_grid,
    mask_watershed,
)
from dacapo_hydra.tasks.instances.size_filter import min_size_grid, remove_small

# The score that picks the best iteration and parameters of every instance task.
INSTANCE_CRITERION = "detection_f1"


class DistanceInstances:
    """Mixin for a distance-type task: instance post-processing, grid and scores.

    The task sets `classes`, `voxel_size`, `object_radius` and `unscale` (target
    units to nm), then calls :meth:`init_instances`. `seed_key` names the grid's
    seed parameter: `h` (h-maxima dynamic) or `seed_distance` (threshold).
    List it before the task's base class, so that its methods take precedence.
    """

    classes: ClassMap
    voxel_size: tuple[float, ...]
    object_radius: float | None
    instances = True
    seed_key = "h"
    # Seed sources swept: the predicted distance, and (for distances to the foreground's
    # boundary) the distance transform of the predicted mask.
    seed_sources: tuple[str, ...] = ("prediction", "mask")

    def init_instances(
        self,
        seeds: Sequence[Length] | None,
        default_seed_voxels: Sequence[float],
        min_sizes: Sequence[int] | None,
        foreground_distance: Length | None,
        default_foreground: float,
    ) -> None:
        """Resolve the seed grid (nm), the size grid (voxels) and the foreground level (nm).

        Unset h values come from :func:`~dacapo_hydra.tasks.instances.distance_watershed.h_grid`;
        unset seed distances are `default_seed_voxels` voxels plus 0.25 and 0.5 of
        the measured object radius.
        """
        vs = self.voxel_size
        if self.seed_key == "h":
            self.seed_values = h_grid(seeds, vs, self.object_radius)
        elif seeds:
            values = [to_nm(s, vs, "task.seed_distances", min_voxels=0) for s in seeds]
            self.seed_values = sorted({round(v, 6) for v in values})
        else:
            values = [v * min(vs) for v in default_seed_voxels]
            if self.object_radius:
                values += [f * self.object_radius for f in (0.25, 0.5)]
            self.seed_values = sorted({round(v, 6) for v in values})
        self.min_sizes = min_size_grid(min_sizes, self.object_radius, vs)
        self.foreground_distance = (
            default_foreground
            if foreground_distance is None
            else to_nm(foreground_distance, vs, "task.foreground_distance")
        )

    def class_instances(self, gt: np.ndarray) -> np.ndarray:
        """(C, *spatial): the ground-truth instances of each class, 0 elsewhere."""
        return np.stack([np.where(m, gt, 0) for m in self.classes.masks(gt)])

    def instance_grid(self) -> list[Params]:
        """One parameter set per seed source, seed value and minimum size."""
        sources = [{"seeds": s} for s in self.seed_sources] if len(self.seed_sources) > 1 else [{}]
        return [
            {**source, self.seed_key: s, "min_size": m}
            for source in sources
            for s in self.seed_values
            for m in self.min_sizes
        ]

    def segment(self, distance: np.ndarray, params: Params) -> np.ndarray:
        """Instances (C, *spatial) uint64 from target-unit distances (C, *spatial), unfiltered."""
        seed = {self.seed_key: float(params[self.seed_key])}
        source = params.get("seeds", "prediction")
        if source not in ("prediction", "mask"):
            raise KeyError(
                f"{type(self).__name__}: seeds must be 'prediction' or 'mask', got {source!r}"
            )
        out = []
        for d in self.unscale(distance):
            foreground = d > self.foreground_distance
            if source == "mask":
                out.append(mask_watershed(foreground, self.voxel_size, **seed))
            else:
                out.append(distance_watershed(d, foreground, self.voxel_size, **seed))
        return np.stack(out)

    def filter_sizes(self, labels: np.ndarray, params: Params) -> np.ndarray:
        """Labels (C, *spatial) without objects under `min_size` voxels, ids 1..n per channel."""
        return np.stack([remove_small(c, int(params.get("min_size", 0))) for c in labels])

    def instance_grid_outputs(self, distance: np.ndarray) -> Iterator[tuple[Params, np.ndarray]]:
        """Every (parameter set, instances): one watershed per seed value, then each size."""
        for params in self.instance_grid():
            if params["min_size"] == self.min_sizes[0]:
                labels = self.segment(distance, params)
            yield params, self.filter_sizes(labels, params)

    def evaluate_instances(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Instance scores per class, and their mean under the plain score names."""
        truth = self.class_instances(gt)
        return merge_class_scores(
            {
                name: instance_scores(output[c], truth[c], mask, self.voxel_size)
                for c, name in enumerate(self.classes.names)
            }
        )

    def instance_directions(self) -> dict[str, bool]:
        """Instance score directions, per class when there are several."""
        return class_score_directions(self.classes.names, INSTANCE_SCORE_DIRECTIONS)

    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Instance scores per class (instances); else the next base's (binary) scores."""
        if self.instances:
            return self.evaluate_instances(output, gt, mask)
        return super().evaluate(output, gt, mask)  # type: ignore[misc]

    def score_directions(self) -> dict[str, bool]:
        """Instance score directions (instances); else the next base's."""
        if self.instances:
            return self.instance_directions()
        return super().score_directions()  # type: ignore[misc]
