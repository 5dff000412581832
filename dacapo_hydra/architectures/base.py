"""What every architecture answers, whatever network it wraps."""

from __future__ import annotations

import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from torch import nn

log = logging.getLogger(__name__)


def per_axis(value: Any, dims: int, name: str) -> tuple[int, ...]:
    """Expand an int to `dims` ints, or check a list has `dims` positive ints.

    Raises:
        ValueError: naming `name` and the value at fault.

    """
    if isinstance(value, int) and not isinstance(value, bool):
        values = (value,) * dims
    else:
        try:
            values = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be an int or a list of {dims} ints, got {value!r}"
            ) from None
        if len(values) != dims or any(float(v) != float(o) for v, o in zip(values, value)):  # noqa: B905
            raise ValueError(f"{name} must be an int or a list of {dims} ints, got {value!r}")
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return values


# Sizes valid_input_shape searches up to at least, whatever it starts from.
MIN_SEARCH = 4096


class Architecture(nn.Module, ABC):
    """A network that knows its spatial dims, channels and shape arithmetic.

    Shapes are spatial voxels, axis order z, y, x (2D: y, x). Subclasses set
    `dims`, `in_channels`, `out_channels`, `input_shape` and `eval_input_shape`,
    and answer :meth:`output_shape` and :meth:`_axis_ok`.
    """

    dims: int
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]
    eval_input_shape: tuple[int, ...]
    # Prefix of parameter names that `trainable` regexes don't see (a wrapper's own).
    trainable_prefix: str = ""

    @property
    def upsample_factor(self) -> tuple[int, ...]:
        """Output voxels per input voxel along each axis (>1 for super-resolution).

        The output's voxel size is the input's divided by this.
        """
        return (1,) * self.dims

    @abstractmethod
    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for an input shape; raises ValueError if it can't work."""

    def is_valid_input_shape(self, input_shape: Sequence[int]) -> bool:
        """Whether `input_shape` gives a well-defined output."""
        try:
            self.output_shape(input_shape)
        except ValueError:
            return False
        return True

    def valid_input_shape(self, near: Sequence[int], direction: str = "up") -> tuple[int, ...]:
        """The nearest valid input shape at or above (`up`) or below (`down`) `near`.

        Raises:
            ValueError: if `direction` is neither `up` nor `down`, or no valid size
                exists that way on some axis.

        """
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        if len(near) != self.dims:
            raise ValueError(f"shape {list(near)} has {len(near)} axes, expected {self.dims}")
        step = 1 if direction == "up" else -1
        configured = getattr(self, "input_shape", None)
        shape = []
        for axis, start in enumerate(near):
            size = int(start)
            # Valid sizes recur with the downsampling period, above a network's smallest
            # valid size (deep, wide-kernel U-Nets: hundreds of voxels), which the
            # configured input size, when valid, bounds too.
            limit = max(10 * int(start) + 100, MIN_SEARCH)
            if configured is not None:
                limit = max(limit, int(configured[axis]) + 1)
            while 0 < size < limit:
                if self._axis_ok(size, axis):
                    break
                size += step
            else:
                raise ValueError(f"no valid input size {direction} from {start} on axis {axis}")
            shape.append(size)
        return tuple(shape)

    @abstractmethod
    def _axis_ok(self, size: int, axis: int) -> bool:
        """Whether `size` voxels of input along `axis` is valid (axes are independent)."""

    @property
    def context(self) -> tuple[int | float, ...]:
        """Voxels of input lost on each side of the output (per axis), for `input_shape`.

        With super-resolution the output covers `output / upsample_factor` input
        voxels; the context is an int wherever it is whole (always, without
        super-resolution, for shapes this class accepts).
        """
        return self.context_for(self.input_shape)

    def context_for(self, input_shape: Sequence[int]) -> tuple[int | float, ...]:
        """As :attr:`context`, for another input shape (e.g. `eval_input_shape`)."""
        out = self.output_shape(input_shape)
        context: list[int | float] = []
        for i, o, u in zip(input_shape, out, self.upsample_factor, strict=True):
            c = (int(i) * u - o) / (2 * u)
            context.append(int(c) if c == int(c) else c)
        return tuple(context)

    def check_input_shape(self, name: str, shape: Sequence[int]) -> None:
        """Refuse a shape that can't work, naming the nearest valid shapes.

        Raises:
            ValueError: `architecture.<name>=[...] does not fit ...; nearest valid shapes`.

        """
        try:
            self.output_shape(shape)
        except ValueError as err:
            why = str(err)
        else:
            return
        nearest = []
        for direction in ("up", "down"):
            try:
                nearest.append(f"{list(self.valid_input_shape(shape, direction))} ({direction})")
            except ValueError:
                continue
        raise ValueError(
            f"architecture.{name}={list(shape)} does not fit {type(self).__name__} ({why})"
            + (f"; nearest valid shapes: {' or '.join(nearest)}" if nearest else "")
        )

    def set_trainable(self, pattern: str | None) -> list[str]:
        """Freeze every parameter whose name does not match the regex `pattern`.

        `None` leaves everything trainable. Matching uses `re.search` on the names
        of :meth:`named_parameters` (e.g. `^right` or `decoder`). Batch norms
        whose parameters are all frozen stay in eval mode while training, so their
        running statistics are frozen too.

        Returns:
            The names of the trainable parameters.

        Raises:
            ValueError: if `pattern` is not a regex or matches no parameter.

        """
        names = [name.removeprefix(self.trainable_prefix) for name, _ in self.named_parameters()]
        if pattern is None:
            return names
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"architecture.trainable={pattern!r} is not a regular expression: {err}"
            ) from None
        trainable = [name for name in names if regex.search(name)]
        if not trainable:
            raise ValueError(
                f"architecture.trainable={pattern!r} matches none of the {len(names)} parameters "
                f"(e.g. {', '.join(names[:4])})"
            )
        chosen = set(trainable)
        for name, param in self.named_parameters():
            param.requires_grad_(name.removeprefix(self.trainable_prefix) in chosen)
        log.info(
            "architecture: %d of %d parameter tensors trainable (%r)",
            len(trainable),
            len(names),
            pattern,
        )
        return trainable

    def train(self, mode: bool = True) -> Architecture:
        """Set training mode, keeping batch norms with frozen parameters in eval mode."""
        super().train(mode)
        if mode:
            for module in self.modules():
                params = list(module.parameters(recurse=False))
                if (
                    isinstance(module, nn.modules.batchnorm._BatchNorm)
                    and params
                    and not any(p.requires_grad for p in params)
                ):
                    module.eval()
        return self


def total_factor(factors: Sequence[Sequence[int]], dims: int) -> tuple[int, ...]:
    """Per-axis product of a list of per-axis factors."""
    return tuple(math.prod(f[d] for f in factors) for d in range(dims))
