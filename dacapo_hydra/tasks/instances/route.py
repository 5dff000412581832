"""What an instance post-processing route is: a parameter grid and a segmentation.

A task lists its routes (its YAML's `routes`, each a `_target_` node); the task
base (:class:`~dacapo_hydra.tasks.base.Task`) sweeps every route's grid at
validation, post-processes with the route a parameter set names, and ends each
route with the size filter. Blockwise labels ask the route for a region graph
(:meth:`Route.region_graph`): a route that has one merges fragments of the whole
volume by its edges; one without segments each block with context and matches
fragments across the faces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dacapo_hydra.config.targets import check_arguments, target_class
from dacapo_hydra.errors import ConfigError

Params = dict[str, float | int | str]


@dataclass(frozen=True)
class RouteSpec:
    """What the task knows that a route's grid and segmentation may need.

    Attributes:
        dims: spatial dimensions.
        voxel_size: nm per voxel of the prediction (z, y, x).
        object_radius: nm, the typical object's inscribed radius (None: not measured).
        offsets: per channel of the route's input, its offset in voxels (affinities;
            empty for other inputs).

    """

    dims: int
    voxel_size: tuple[float, ...]
    object_radius: float | None = None
    offsets: tuple[tuple[int, ...], ...] = ()


class Route(ABC):
    """One way from an activated prediction to instance labels.

    Subclasses set `name` (the value of the task's route key in a parameter set,
    e.g. `{"route": "mutex", "bias": 0.5, "min_size": 20}`) and take their swept
    values as constructor arguments (the YAML's route node). The size filter
    (`min_size`) is the task's, not the route's.
    """

    name: ClassVar[str]

    @abstractmethod
    def grid(self, spec: RouteSpec) -> list[Params]:
        """The route's own parameter sets swept at validation (without `min_size`)."""

    @abstractmethod
    def run(self, prediction: np.ndarray, params: Params, spec: RouteSpec) -> np.ndarray:
        """Instance labels (*spatial) uint64 from the route's input (C, *spatial).

        Args:
            prediction: what the task hands its routes (e.g. the affinity channels).
            params: one parameter set (the route reads its own keys).
            spec: what the task knows.

        """

    def run_grid(
        self, prediction: np.ndarray, grid: Sequence[Params], spec: RouteSpec
    ) -> Iterator[tuple[Params, np.ndarray]]:
        """Every parameter set of `grid` with its labels; override to share work between sets."""
        for params in grid:
            yield params, self.run(prediction, params, spec)

    def region_graph(self, params: Params, spec: RouteSpec) -> Any:
        """How blockwise labels solve `params` on the whole volume's region graph, or None.

        None (the default): each block runs the route on its region with context and
        fragments of neighbouring blocks merge where they match on the shared face.
        Otherwise an object with `fragments(prediction)`, `edges(fragments,
        prediction)`, `face_channels()` and `threshold` (e.g.
        :class:`~dacapo_hydra.tasks.instances.agglomeration.AffinityGraph`): each block
        makes fragments and region-graph rows, and the global solve keeps the edges
        whose mean affinity exceeds the threshold.
        """
        del params, spec
        return None


def check_unit_interval(values: Sequence[float], key: str) -> list[float]:
    """`values` as floats, refused unless non-empty and all in (0, 1).

    Raises:
        ValueError: naming `key`.

    """
    out = [float(v) for v in values]
    if not out or not all(0 < v < 1 for v in out):
        raise ValueError(f"{key}: need values in (0, 1), got {out}")
    return out


def check_route_nodes(task: Mapping[str, Any], key: str = "task") -> None:
    """Check a task config's `routes` before the task is built, naming the key at fault.

    Each entry must name a :class:`Route` (`<key>.routes[i]._target_`), give only
    arguments its constructor takes and values it accepts (`<key>.routes[i].<arg>`).

    Raises:
        ConfigError: one line naming the route's key.

    """
    import hydra.utils
    from hydra.errors import InstantiationException

    for i, node in enumerate(task.get("routes") or ()):
        where = f"{key}.routes[{i}]"
        cls = target_class(node, where, Route)
        check_arguments(cls, node.keys(), where, name=str(node["_target_"]))
        try:
            hydra.utils.instantiate(node)
        except InstantiationException as err:
            cause = err.__cause__ or err
            message = str(cause.args[0] if cause.args else cause)
            argument = message.partition(":")[0]
            joined = f"{where}.{message}" if argument in node else f"{where}: {message}"
            raise ConfigError(joined) from err
