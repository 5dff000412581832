"""Shape arithmetic for networks we did not write: learned by trial on the meta device.

A wrapped network (MONAI's, a user's module, a saved program) doesn't tell its
output shape in closed form, so it is found by running the network on a "meta"
tensor, which carries shapes but no data: no memory and no compute. Networks
whose operations have no meta kernel (TorchScript, say) are tried on a zero
tensor on the CPU instead. Results are cached per shape.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dacapo_hydra.architectures.base import Architecture, per_axis

log = logging.getLogger(__name__)


class TracedArchitecture(Architecture):
    """An architecture around `self.network`, its shapes found by trial forward passes.

    Subclasses build `self.network`, set `dims` and `in_channels`, then call
    :meth:`_setup_shapes`. Input sizes must be multiples of `divisor` (given, or
    inferred by trial); axes are taken to be independent: an axis size is valid
    if the network runs with it while the other axes keep `input_shape` (rounded
    up to the divisor).
    """

    network: nn.Module
    trainable_prefix = "network."

    def _setup_shapes(
        self,
        input_shape: Any,
        eval_input_shape: Any,
        divisor: Any,
        upsample_factor: Any = 1,
        same_padding: bool = False,
    ) -> None:
        """Check the shapes by trial and learn `out_channels`.

        Raises:
            ValueError: naming the shape at fault and the nearest valid ones.

        """
        self._cache: dict[tuple[int, ...], tuple[tuple[int, ...], int] | str] = {}
        self._meta_copy: list[nn.Module | None] = []
        self._meta_ok = False
        self._same_padding = same_padding
        self._upsample = per_axis(upsample_factor, self.dims, "architecture.upsample_factor")
        self.input_shape = per_axis(input_shape, self.dims, "architecture.input_shape")
        self.eval_input_shape = per_axis(
            eval_input_shape if eval_input_shape is not None else self.input_shape,
            self.dims,
            "architecture.eval_input_shape",
        )
        self.divisor = (
            per_axis(divisor, self.dims, "architecture.divisor")
            if divisor is not None
            else self._infer_divisor()
        )
        self.check_input_shape("input_shape", self.input_shape)
        self.check_input_shape("eval_input_shape", self.eval_input_shape)
        _, self.out_channels = self._trial(self.input_shape)

    def _infer_divisor(self) -> tuple[int, ...]:
        """The smallest of 1, 2, 4, ... 64 whose multiples near `input_shape` all run.

        Probes the input shape rounded up to multiples of d, and that plus d on each
        axis in turn. A network that runs on `input_shape` only (a program exported
        for one shape, say) gets 1: trial passes alone then decide. Networks with
        per-axis needs set `divisor` instead.
        """
        self.divisor = (1,) * self.dims
        why = ""
        for d in (1, 2, 4, 8, 16, 32, 64):
            shape = tuple(-(-s // d) * d for s in self.input_shape)
            probes = [shape] + [
                tuple(s + d * (a == axis) for a, s in enumerate(shape)) for axis in range(self.dims)
            ]
            results = [self._compute(p) for p in probes]
            why = next((r for r in results if isinstance(r, str)), "")
            if not why:
                self._cache.clear()
                return (d,) * self.dims
        if isinstance(self._compute(self.input_shape), tuple):
            return self.divisor
        raise ValueError(
            f"architecture: the network runs on no input shape near {list(self.input_shape)} "
            f"made of multiples of 1 to 64 ({why}); check the network, or set "
            "architecture.divisor (per axis)"
        )

    @property
    def upsample_factor(self) -> tuple[int, ...]:
        """As configured (1: output voxels are input voxels)."""
        return self._upsample

    def _run_trial(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Output (channels, *spatial) of the network for a (1, in_channels, *shape) input.

        The meta copy is trusted once it has run one shape; until then a failure on
        it is checked on the CPU, and if the CPU succeeds the meta copy is dropped.
        """
        if not self._meta_copy:
            try:
                self._meta_copy.append(copy.deepcopy(self.network).to("meta").eval())
            except Exception:  # any failure means: no meta copy, try on the CPU
                self._meta_copy.append(None)
        meta = self._meta_copy[0]
        with torch.no_grad():
            if meta is not None:
                try:
                    out = meta(torch.empty(1, self.in_channels, *shape, device="meta"))
                except Exception:
                    if self._meta_ok:
                        raise
                else:
                    self._meta_ok = True
                    return tuple(out.shape[1:])
            out = self._cpu_trial(shape)
            if meta is not None:
                log.debug("architecture: the meta device can't run this network; using the CPU")
                self._meta_copy[0] = None
        return tuple(out.shape[1:])

    def _cpu_trial(self, shape: tuple[int, ...]) -> torch.Tensor:
        training = self.network.training
        self.network.eval()
        try:
            device = next(iter(self.network.parameters()), torch.empty(0)).device
            return self.network(torch.zeros(1, self.in_channels, *shape, device=device))
        finally:
            self.network.train(training)

    def _trial(self, shape: Sequence[int]) -> tuple[tuple[int, ...], int]:
        """Spatial output shape and channels for `shape`; ValueError saying why not."""
        key = tuple(int(s) for s in shape)
        if len(key) != self.dims:
            raise ValueError(f"shape {list(key)} has {len(key)} axes, expected {self.dims}")
        if key not in self._cache:
            self._cache[key] = self._compute(key)
        result = self._cache[key]
        if isinstance(result, str):
            raise ValueError(result)
        return result

    def _compute(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int] | str:
        bad = [a for a, (s, d) in enumerate(zip(shape, self.divisor, strict=True)) if s % d]
        if bad:
            return f"size on axis {bad[0]} is not a multiple of divisor {list(self.divisor)}"
        try:
            out = self._run_trial(shape)
        except Exception as err:  # the network's own error says why the shape fails
            first_line = (str(err).strip().splitlines() or [""])[0][:200]
            return f"the network fails on it: {type(err).__name__}: {first_line}"
        if len(out) != self.dims + 1:
            return f"the network's output has shape {list(out)}, expected channels + {self.dims}"
        spatial = out[1:]
        if any(o < 1 for o in spatial):
            return f"the network's output would be {list(spatial)}"
        if self._same_padding and spatial != shape:
            return f"the network's output {list(spatial)} differs from its input"
        return spatial, out[0]

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for `input_shape`, found by a trial forward pass."""
        return self._trial(input_shape)[0]

    def _axis_ok(self, size: int, axis: int) -> bool:
        if size % self.divisor[axis]:
            return False
        # The other axes keep the training input shape, rounded up to the divisor.
        shape = [-(-s // d) * d for s, d in zip(self.input_shape, self.divisor, strict=True)]
        shape[axis] = size
        try:
            self._trial(shape)
        except ValueError:
            return False
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped network's output."""
        return self.network(x)
