"""What every architecture answers, whatever network it wraps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from torch import nn


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


class Architecture(nn.Module, ABC):
    """A network that knows its spatial dims, channels and shape arithmetic.

    Shapes are spatial voxels, axis order z, y, x (2D: y, x).
    """

    dims: int
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]
    eval_input_shape: tuple[int, ...]

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
        """The nearest valid input shape at or above (`up`) or below (`down`) `near`."""
        step = 1 if direction == "up" else -1
        shape = []
        for axis, start in enumerate(near):
            size = int(start)
            while 0 < size < 10 * int(start) + 100:
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
    def context(self) -> tuple[int, ...]:
        """Voxels of input lost on each side of the output (per axis)."""
        out = self.output_shape(self.input_shape)
        return tuple((i - o) // 2 for i, o in zip(self.input_shape, out, strict=True))
