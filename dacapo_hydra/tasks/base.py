"""The interface every task implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from dacapo_hydra.tasks.instances.route import Params, Route, RouteSpec
from dacapo_hydra.tasks.instances.size_filter import remove_small

__all__ = ["Params", "Task"]


class Task(ABC):
    """What is learned and how it is judged.

    Training: `num_channels`, `targets`, `loss`, `activation`. Validation (called on
    activated predictions of whole validation volumes, in memory):
    `parameter_grid` lists the post-processing parameter sets to sweep,
    `post_process` turns a prediction into binary, class or instance labels with one
    of them, `evaluate` scores that output against the ground truth,
    `score_directions` says for each score whether higher is better, and
    `criterion` names the score that picks the best iteration and parameters.

    Targets are made at the ground truth's voxel size (`target_voxel_size`), the
    voxel size of the network's output. Tasks whose output is instance labels set
    `instances`; their parameter sets may hold `min_size` (voxels), the size filter
    that blockwise post-processing applies globally rather than per block.

    A task with `routes` (:class:`~dacapo_hydra.tasks.instances.route.Route`, listed
    in its YAML) gets `parameter_grid`, `post_process`, `post_process_grid` and
    `graph_route` from here: every route's grid crossed with `min_sizes`, each set
    naming its route under `route_key`, and each route's labels size-filtered.
    Tasks without routes implement `parameter_grid` and `post_process` themselves.

    Args:
        dims: spatial dimensions of the data.
        voxel_size: ground-truth voxel size in nm (z, y, x).
        object_radius: nm; the typical object's inscribed radius measured on the
            training labels (:func:`~dacapo_hydra.data.statistics.typical_object_radius`),
            from which tasks derive the lengths and sizes the user leaves unset.

    """

    criterion: str = "dice"
    instances: bool = False
    routes: tuple[Route, ...] = ()
    route_key: str = "route"
    min_sizes: Sequence[int] = (0,)

    def __init__(
        self, dims: int, voxel_size: Sequence[float], object_radius: float | None = None
    ) -> None:
        self.dims = dims
        self.voxel_size = tuple(float(v) for v in voxel_size)
        if len(self.voxel_size) != dims:
            raise ValueError(f"task: voxel_size {self.voxel_size} does not have {dims} entries")
        self.object_radius = float(object_radius) if object_radius else None

    @property
    @abstractmethod
    def num_channels(self) -> int:
        """Output channels the network's head must produce."""

    @property
    def channel_names(self) -> list[str]:
        """One name per output channel, as viewers label them (OME-Zarr `omero` labels)."""
        return [f"channel {i}" for i in range(self.num_channels)]

    @property
    def output_range(self) -> tuple[float, float]:
        """The range of the activated prediction, the viewers' default contrast window."""
        return (0.0, 1.0)

    @property
    def target_voxel_size(self) -> tuple[float, ...]:
        """Voxel size (nm) of targets and predictions: the ground truth's."""
        return self.voxel_size

    @abstractmethod
    def targets(self, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets and weights, each (channels, *spatial), from one crop.

        Targets are float32 except class indices (int64); weights are float32 and 0
        wherever the target is not known.

        Args:
            gt: instance or class labels of the crop, (*spatial) integers.
            mask: 1 where the ground truth is annotated, (*spatial).

        """

    @abstractmethod
    def loss(
        self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Weighted loss of raw network output against targets (N, C, *spatial)."""

    def activation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Map raw network output to the target's range at inference (identity by default)."""
        return prediction

    def parameter_grid(self) -> list[Params]:
        """The post-processing parameter sets to sweep at validation (here: the routes')."""
        spec = self.route_spec
        return [
            {self.route_key: route.name, **params, "min_size": m}
            for route in self._own_routes()
            for params in route.grid(spec)
            for m in self.min_sizes
        ]

    def post_process(self, prediction: np.ndarray, params: Params) -> np.ndarray:
        """Labels from an activated prediction (C, *spatial) with one parameter set.

        Returns binary masks (C, *spatial), class indices (*spatial) or instance
        labels, as the task's docstring says; `evaluate` takes exactly that. Here:
        the instances (*spatial) uint64 of the route `params` names, size-filtered.
        """
        labels = self.route_of(params).run(self.route_input(prediction), params, self.route_spec)
        return remove_small(labels, int(params.get("min_size", 0)))

    @property
    def route_spec(self) -> RouteSpec:
        """What the task's routes are told: dims, voxel size, object radius (and offsets)."""
        return RouteSpec(self.dims, self.voxel_size, self.object_radius)

    def route_input(self, prediction: np.ndarray) -> np.ndarray:
        """The part of the activated prediction the routes segment (all of it by default)."""
        return prediction

    def route_of(self, params: Params) -> Route:
        """The route a parameter set names under `route_key` (none named: the first).

        Raises:
            KeyError: naming the route and the task's routes.

        """
        routes = self._own_routes()
        name = params.get(self.route_key, routes[0].name)
        for route in routes:
            if route.name == name:
                return route
        raise KeyError(
            f"{type(self).__name__}: {self.route_key} must be one of "
            f"{[r.name for r in routes]}, got {name!r}"
        )

    def set_routes(self, routes: Sequence[Route]) -> None:
        """Keep the task's routes, refusing none, a non-route, or two of one name.

        Raises:
            ValueError: naming `routes` (and the entry at fault).

        """
        routes = tuple(routes)
        if not routes:
            raise ValueError("routes: need at least one post-processing route")
        for i, route in enumerate(routes):
            if not isinstance(route, Route):
                raise ValueError(f"routes[{i}]: {route!r} is not a post-processing Route")
        names = [route.name for route in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"routes: each route may be listed once, got {names}")
        self.routes = routes

    def _own_routes(self) -> tuple[Route, ...]:
        """The task's routes, refused when it has none (it must post-process itself)."""
        if not self.routes:
            raise NotImplementedError(
                f"{type(self).__name__} has no routes: it must implement "
                "parameter_grid and post_process"
            )
        return self.routes

    def graph_route(self, params: Params) -> Any:
        """How blockwise labels solve `params` on the whole volume's region graph.

        None (the default, and for a task without routes): each block
        post-processes its region with context, and fragments of neighbouring blocks
        that match on their shared face merge. Otherwise the route's
        :meth:`~dacapo_hydra.tasks.instances.route.Route.region_graph` (e.g.
        :class:`~dacapo_hydra.tasks.instances.agglomeration.AffinityGraph`), which
        makes each block's fragments and region-graph rows and names the rule of the
        global solve.
        """
        if not self.routes:
            return None
        return self.route_of(params).region_graph(params, self.route_spec)

    def check_crop(self, extent: Sequence[float]) -> None:
        """Raise ValueError naming the key if a length of the task does not fit a training crop.

        Args:
            extent: nm per axis of the network's output crop.

        """
        del extent  # a task without lengths has nothing to check

    def post_process_grid(self, prediction: np.ndarray) -> Iterator[tuple[Params, np.ndarray]]:
        """Every parameter set of the grid with its output, in `parameter_grid`'s order.

        With routes, each route runs its grid once (:meth:`Route.run_grid
        <dacapo_hydra.tasks.instances.route.Route.run_grid>`, which may share work
        between sets) and every output is size-filtered at each of `min_sizes`.
        """
        if not self.routes:
            for params in self.parameter_grid():
                yield params, self.post_process(prediction, params)
            return
        data, spec = self.route_input(prediction), self.route_spec
        for route in self.routes:
            for params, labels in route.run_grid(data, route.grid(spec), spec):
                for m in self.min_sizes:
                    yield (
                        {self.route_key: route.name, **params, "min_size": m},
                        remove_small(labels, m),
                    )

    @abstractmethod
    def evaluate(
        self, output: np.ndarray, gt: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, float]:
        """Scores of a post-processed output against ground-truth labels (*spatial).

        Args:
            output: what `post_process` returned.
            gt: the ground truth, as given to `targets`.
            mask: 1 where annotated (voxels outside are not scored), or None.

        """

    @abstractmethod
    def score_directions(self) -> dict[str, bool]:
        """For every score `evaluate` returns: True if higher is better."""

    def set_criterion(self, criterion: str | None, default: str | None = None) -> None:
        """Use `criterion` (None: `default`, or else the class's) and check it is a score.

        A task calls this last in its `__init__`, once :meth:`score_directions` can
        answer (it may depend on the task's options, e.g. instances or not).

        Raises:
            ValueError: naming the criterion and the scores the task has.

        """
        chosen = criterion if criterion is not None else default
        if chosen is not None:
            self.criterion = chosen
        self.check_criterion()

    def check_criterion(self) -> None:
        """Raise ValueError unless `criterion` is one of the task's scores."""
        directions = self.score_directions()
        if self.criterion not in directions:
            raise ValueError(
                f"task.criterion: {self.criterion!r} is not a score of "
                f"{type(self).__name__}; expected one of {sorted(directions)}"
            )
