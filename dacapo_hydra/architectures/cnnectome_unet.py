"""DaCapo's CNNectomeUNet: a U-Net of valid convolutions.

The layout follows funlib.learn.torch's UNet (which DaCapo's CNNectomeUNet
wraps): valid convolutions shrink the volume, skip connections are centre-
cropped, and each upsampled map is cropped to a multiple of the downsampling
factors below it, so the output is translation-equivariant. Output shape
follows from input shape by :meth:`CNNectomeUNet.output_shape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dacapo_hydra.architectures.base import Architecture, per_axis

UPSAMPLE_MODES = ("transposed", "constant")


class ConvPass(nn.Sequential):
    """`n` valid convolutions, each followed by (batch norm and) ReLU."""

    def __init__(
        self, dims: int, cin: int, cout: int, kernel: tuple[int, ...], n: int, batch_norm: bool
    ) -> None:
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        layers: list[nn.Module] = []
        for i in range(n):
            layers.append(conv(cin if i == 0 else cout, cout, kernel, padding=0))
            if batch_norm:
                layers.append(norm(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing spatial axes of `x` to `shape` around the centre."""
    spatial = x.shape[-len(shape) :]
    index = tuple(
        slice((s - t) // 2, (s - t) // 2 + t) for s, t in zip(spatial, shape, strict=True)
    )
    return x[(Ellipsis, *index)]


class CNNectomeUNet(Architecture):
    """Valid-convolution U-Net.

    Args:
        input_shape: training input shape in voxels (int: same on every axis).
        dims: spatial dimensions (2 or 3), from the datasplit.
        in_channels: raw channels, from the datasplit.
        num_fmaps: feature maps at the top level.
        fmap_inc_factor: feature maps multiply by this per level down.
        downsample_factors: one factor per level (int or per-axis list).
        kernel_size: convolution kernel size.
        convs_per_level: convolutions per level on each side.
        upsample: `transposed` (learned) or `constant` (nearest repeat).
        batch_norm: batch normalisation after each convolution.
        fmaps_out: output feature maps (default `num_fmaps`).
        eval_input_shape: larger input for prediction (default `input_shape`).

    """

    def __init__(
        self,
        input_shape: Any,
        dims: int = 3,
        in_channels: int = 1,
        num_fmaps: int = 12,
        fmap_inc_factor: int = 5,
        downsample_factors: Sequence[Any] = (2,),
        kernel_size: int = 3,
        convs_per_level: int = 2,
        upsample: str = "transposed",
        batch_norm: bool = False,
        fmaps_out: int | None = None,
        eval_input_shape: Any = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"architecture: dims must be 2 or 3, got {dims}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(
                f"architecture.upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"architecture.kernel_size must be odd and positive, got {kernel_size}"
            )
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = fmaps_out or num_fmaps
        self.kernel = (kernel_size,) * dims
        self.convs_per_level = convs_per_level
        self.factors = [
            per_axis(f, dims, f"architecture.downsample_factors[{i}]")
            for i, f in enumerate(downsample_factors)
        ]
        self.upsample_mode = upsample
        self.input_shape = per_axis(input_shape, dims, "architecture.input_shape")
        self.eval_input_shape = per_axis(
            eval_input_shape if eval_input_shape is not None else self.input_shape,
            dims,
            "architecture.eval_input_shape",
        )
        for name, shape in (
            ("input_shape", self.input_shape),
            ("eval_input_shape", self.eval_input_shape),
        ):
            if not self.is_valid_input_shape(shape):
                up = self.valid_input_shape(shape, "up")
                down = self._safe_down(shape)
                raise ValueError(
                    f"architecture.{name}={list(shape)} does not fit this U-Net "
                    f"({self._why(shape)}); nearest valid shapes: {list(up)} (up)"
                    + (f" or {list(down)} (down)" if down else "")
                )

        levels = len(self.factors) + 1
        fmaps = [num_fmaps * fmap_inc_factor**i for i in range(levels)]
        conv = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        pool = nn.MaxPool3d if dims == 3 else nn.MaxPool2d
        self.left = nn.ModuleList(
            ConvPass(
                dims,
                in_channels if i == 0 else fmaps[i - 1],
                fmaps[i],
                self.kernel,
                convs_per_level,
                batch_norm,
            )
            for i in range(levels)
        )
        self.down = nn.ModuleList(pool(f, stride=f) for f in self.factors)
        self.up = nn.ModuleList(
            conv(fmaps[i + 1], fmaps[i + 1], f, stride=f)
            if upsample == "transposed"
            else nn.Upsample(scale_factor=f, mode="nearest")
            for i, f in enumerate(self.factors)
        )
        self.right = nn.ModuleList(
            ConvPass(
                dims,
                fmaps[i] + fmaps[i + 1],
                self.out_channels if i == 0 else fmaps[i],
                self.kernel,
                convs_per_level,
                batch_norm,
            )
            for i in range(levels - 1)
        )

    def _crop_factor(self, level: int) -> tuple[int, ...]:
        return tuple(math.prod(f[d] for f in self.factors[level:]) for d in range(self.dims))

    def _conv_crop(self) -> tuple[int, ...]:
        return tuple(self.convs_per_level * (k - 1) for k in self.kernel)

    def _trace_axis(self, size: int, axis: int) -> int:
        """Output size along one axis (axes are independent); ValueError where it breaks."""
        crop = self.convs_per_level * (self.kernel[axis] - 1)
        skips = []
        for level, factors in enumerate(self.factors):
            size -= crop
            if size < 1:
                raise ValueError(f"level {level} convolutions leave {size} voxels on axis {axis}")
            if size % factors[axis]:
                raise ValueError(
                    f"level {level} size {size} on axis {axis} is not divisible by {factors[axis]}"
                )
            skips.append(size)
            size //= factors[axis]
        size -= crop
        if size < 1:
            raise ValueError(f"bottom convolutions leave {size} voxels on axis {axis}")
        for level in reversed(range(len(self.factors))):
            size = self._crop_to_factor_axis(size * self.factors[level][axis], level, axis)
            if size <= crop or size > skips[level]:
                raise ValueError(f"upsampled level {level} size {size} on axis {axis} does not fit")
            size -= crop
        return size

    def _crop_to_factor_axis(self, size: int, level: int, axis: int) -> int:
        crop = self.convs_per_level * (self.kernel[axis] - 1)
        factor = math.prod(f[axis] for f in self.factors[level:])
        return ((size - crop) // factor) * factor + crop

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for `input_shape`; ValueError saying why it can't work."""
        if len(input_shape) != self.dims:
            raise ValueError(
                f"shape {list(input_shape)} has {len(input_shape)} axes, expected {self.dims}"
            )
        return tuple(self._trace_axis(int(s), axis) for axis, s in enumerate(input_shape))

    def _axis_ok(self, size: int, axis: int) -> bool:
        try:
            self._trace_axis(size, axis)
        except ValueError:
            return False
        return True

    def _why(self, shape: Sequence[int]) -> str:
        try:
            self.output_shape(shape)
        except ValueError as err:
            return str(err)
        return "valid"

    def _safe_down(self, shape: Sequence[int]) -> tuple[int, ...] | None:
        try:
            return self.valid_input_shape(shape, "down")
        except ValueError:
            return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, *input) to (N, out_channels, *output_shape(input))."""
        skips = []
        for level, down in enumerate(self.down):
            x = self.left[level](x)
            skips.append(x)
            x = down(x)
        x = self.left[-1](x)
        for level in reversed(range(len(self.factors))):
            x = self.up[level](x)
            target = [
                self._crop_to_factor_axis(s, level, axis) for axis, s in enumerate(x.shape[2:])
            ]
            x = center_crop(x, target)
            x = torch.cat([center_crop(skips[level], target), x], dim=1)
            x = self.right[level](x)
        return x
