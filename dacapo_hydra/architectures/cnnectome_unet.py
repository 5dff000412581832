"""DaCapo's CNNectomeUNet: a U-Net of valid (or same) convolutions.

The layout follows funlib.learn.torch's UNet (which DaCapo's CNNectomeUNet
wraps): valid convolutions shrink the volume, skip connections are centre-
cropped, and each upsampled map is cropped to a multiple of the downsampling
factors below it, so the output is translation-equivariant. Optional attention
gates weigh the skips (MONAI's attention block, as in its AttentionUnet), and
upsampling layers after the last level give super-resolution (DaCapo's
`upsample_factors`). Output shape follows from input shape by
:meth:`CNNectomeUNet.output_shape`, one axis at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from dacapo_hydra.architectures.base import Architecture, per_axis, total_factor

UPSAMPLE_MODES = ("transposed", "constant")
PADDING_MODES = ("valid", "same")

Kernel = tuple[int, ...]


class ConvPass(nn.Sequential):
    """Convolutions with the given kernels, each followed by (batch norm and) ReLU."""

    def __init__(
        self,
        dims: int,
        cin: int,
        cout: int,
        kernels: Sequence[Kernel],
        padding: str = "valid",
        batch_norm: bool = False,
    ) -> None:
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        layers: list[nn.Module] = []
        for i, kernel in enumerate(kernels):
            pad = tuple(k // 2 for k in kernel) if padding == "same" else 0
            layers.append(conv(cin if i == 0 else cout, cout, kernel, padding=pad))
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


def _kernels(
    spec: Any, levels: int, default: Sequence[Kernel], dims: int, name: str
) -> list[list[Kernel]]:
    """Per-level lists of per-axis kernels from a config value (or the default)."""
    if spec is None:
        return [list(default) for _ in range(levels)]
    if isinstance(spec, (str, int)) or len(spec) != levels:
        raise ValueError(
            f"{name} must list {levels} levels, each a list of kernel sizes, got {spec!r}"
        )
    out = []
    for level, convs in enumerate(spec):
        if isinstance(convs, (str, int)) or len(convs) == 0:
            raise ValueError(
                f"{name}[{level}] must be a non-empty list of kernel sizes, got {convs!r}"
            )
        kernels = [per_axis(k, dims, f"{name}[{level}][{i}]") for i, k in enumerate(convs)]
        for i, kernel in enumerate(kernels):
            if any(k % 2 == 0 for k in kernel):
                raise ValueError(f"{name}[{level}][{i}] must be odd, got {list(kernel)}")
        out.append(kernels)
    return out


class CNNectomeUNet(Architecture):
    """DaCapo's CNNectomeUNet, 2D or 3D from the same code.

    Args:
        input_shape: training input shape in voxels (int: same on every axis).
        dims: spatial dimensions (2 or 3), from the datasplit.
        in_channels: raw channels, from the datasplit.
        num_fmaps: feature maps at the top level.
        fmap_inc_factor: feature maps multiply by this per level down.
        downsample_factors: one factor per level (int or per-axis list: anisotropic).
        kernel_size: kernel size of every convolution unless the per-level lists
            below are given.
        convs_per_level: convolutions per level on each side (with `kernel_size`).
        kernel_size_down: per level (len(downsample_factors) + 1), a list of kernel
            sizes (int or per-axis list), one per convolution.
        kernel_size_up: the same for the len(downsample_factors) upward levels.
        upsample: `transposed` (learned) or `constant` (nearest repeat).
        padding: `valid` (DaCapo's default: the output shrinks, translation
            equivariant) or `same`.
        batch_norm: batch normalisation after each convolution.
        attention: attention gates on the skip connections.
        upsample_factors: factors (int or per-axis list) of extra upsampling after
            the last level, each followed by two 3-wide convolutions: the output's
            voxel size is the input's divided by their product (super-resolution).
        fmaps_out: output feature maps (default `num_fmaps`).
        fmaps_in: DaCapo's input channels; if given, must equal `in_channels`.
        eval_input_shape: larger input for prediction (default `input_shape`).
        trainable: regex of parameter names to train; the rest are frozen.

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
        kernel_size_down: Sequence[Sequence[Any]] | None = None,
        kernel_size_up: Sequence[Sequence[Any]] | None = None,
        upsample: str = "transposed",
        padding: str = "valid",
        batch_norm: bool = False,
        attention: bool = False,
        upsample_factors: Sequence[Any] = (),
        fmaps_out: int | None = None,
        fmaps_in: int | None = None,
        eval_input_shape: Any = None,
        trainable: str | None = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"architecture: dims must be 2 or 3, got {dims}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(
                f"architecture.upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}"
            )
        if padding not in PADDING_MODES:
            raise ValueError(
                f"architecture.padding must be one of {PADDING_MODES}, got {padding!r}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"architecture.kernel_size must be odd and positive, got {kernel_size}"
            )
        if convs_per_level < 1:
            raise ValueError(f"architecture.convs_per_level must be >= 1, got {convs_per_level}")
        if num_fmaps < 1 or fmap_inc_factor < 1:
            raise ValueError(
                f"architecture.num_fmaps ({num_fmaps}) and fmap_inc_factor ({fmap_inc_factor}) "
                "must be >= 1"
            )
        if fmaps_in is not None and fmaps_in != in_channels:
            raise ValueError(
                f"architecture.fmaps_in={fmaps_in} but the datasplit's raw has "
                f"{in_channels} channel(s); leave fmaps_in unset"
            )
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = fmaps_out or num_fmaps
        self.padding = padding
        self.upsample_mode = upsample
        self.factors = [
            per_axis(f, dims, f"architecture.downsample_factors[{i}]")
            for i, f in enumerate(downsample_factors)
        ]
        self.sr_factors = [
            per_axis(f, dims, f"architecture.upsample_factors[{i}]")
            for i, f in enumerate(upsample_factors)
        ]
        levels = len(self.factors) + 1
        default = [(kernel_size,) * dims] * convs_per_level
        self.kernels_down = _kernels(
            kernel_size_down, levels, default, dims, "architecture.kernel_size_down"
        )
        self.kernels_up = _kernels(
            kernel_size_up, levels - 1, default, dims, "architecture.kernel_size_up"
        )
        self.sr_kernels = [(3,) * dims] * 2
        self.input_shape = per_axis(input_shape, dims, "architecture.input_shape")
        self.eval_input_shape = per_axis(
            eval_input_shape if eval_input_shape is not None else self.input_shape,
            dims,
            "architecture.eval_input_shape",
        )
        self.check_input_shape("input_shape", self.input_shape)
        self.check_input_shape("eval_input_shape", self.eval_input_shape)

        fmaps = [num_fmaps * fmap_inc_factor**i for i in range(levels)]
        transposed = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        pool = nn.MaxPool3d if dims == 3 else nn.MaxPool2d

        def upsampler(channels: int, factor: Kernel) -> nn.Module:
            if upsample == "transposed":
                return transposed(channels, channels, factor, stride=factor)
            return nn.Upsample(scale_factor=factor, mode="nearest")

        self.left = nn.ModuleList(
            ConvPass(
                dims,
                in_channels if i == 0 else fmaps[i - 1],
                fmaps[i],
                self.kernels_down[i],
                padding,
                batch_norm,
            )
            for i in range(levels)
        )
        self.down = nn.ModuleList(pool(f, stride=f) for f in self.factors)
        self.up = nn.ModuleList(upsampler(fmaps[i + 1], f) for i, f in enumerate(self.factors))
        self.attention = (
            nn.ModuleList(
                AttentionBlock(dims, f_int=max(1, fmaps[i] // 2), f_g=fmaps[i + 1], f_l=fmaps[i])
                for i in range(levels - 1)
            )
            if attention
            else None
        )
        self.right = nn.ModuleList(
            ConvPass(
                dims,
                fmaps[i] + fmaps[i + 1],
                self.out_channels if i == 0 else fmaps[i],
                self.kernels_up[i],
                padding,
                batch_norm,
            )
            for i in range(levels - 1)
        )
        self.sr_up = nn.ModuleList(upsampler(self.out_channels, f) for f in self.sr_factors)
        self.sr_conv = nn.ModuleList(
            ConvPass(
                dims, self.out_channels, self.out_channels, self.sr_kernels, padding, batch_norm
            )
            for _ in self.sr_factors
        )
        self.set_trainable(trainable)

    @property
    def upsample_factor(self) -> tuple[int, ...]:
        """Product of `upsample_factors` per axis (1 without super-resolution)."""
        return total_factor(self.sr_factors, self.dims)

    def _crop(self, kernels: Sequence[Kernel], axis: int) -> int:
        """Voxels the convolutions remove along `axis` (0 with same padding)."""
        if self.padding == "same":
            return 0
        return sum(k[axis] - 1 for k in kernels)

    def _crop_to_factor_axis(self, size: int, level: int, axis: int) -> int:
        """Largest size <= `size` that the levels below `level` map back exactly."""
        crop = self._crop(self.kernels_up[level], axis)
        factor = total_factor(self.factors[level:], self.dims)[axis]
        return ((size - crop) // factor) * factor + crop

    def _trace_axis(self, size: int, axis: int) -> int:
        """Output size along one axis (axes are independent); ValueError where it breaks."""
        start = size
        skips = []
        for level, factors in enumerate(self.factors):
            size -= self._crop(self.kernels_down[level], axis)
            if size < 1:
                raise ValueError(f"level {level} convolutions leave {size} voxels on axis {axis}")
            if size % factors[axis]:
                raise ValueError(
                    f"level {level} size {size} on axis {axis} is not divisible by {factors[axis]}"
                )
            skips.append(size)
            size //= factors[axis]
        size -= self._crop(self.kernels_down[-1], axis)
        if size < 1:
            raise ValueError(f"bottom convolutions leave {size} voxels on axis {axis}")
        for level in reversed(range(len(self.factors))):
            size *= self.factors[level][axis]
            if self.padding == "valid":
                size = self._crop_to_factor_axis(size, level, axis)
            crop = self._crop(self.kernels_up[level], axis)
            if size <= crop or size > skips[level]:
                raise ValueError(f"upsampled level {level} size {size} on axis {axis} does not fit")
            size -= crop
        for i, factors in enumerate(self.sr_factors):
            size = size * factors[axis] - self._crop(self.sr_kernels, axis)
            if size < 1:
                raise ValueError(f"upsample_factors[{i}] convolutions leave {size} voxels")
        if (start * self.upsample_factor[axis] - size) % 2:
            raise ValueError(
                f"the output ({size} voxels) would sit half a voxel off the input's grid "
                f"on axis {axis}"
            )
        return size

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
            if self.padding == "valid":
                target = [
                    self._crop_to_factor_axis(s, level, axis) for axis, s in enumerate(x.shape[2:])
                ]
                x = center_crop(x, target)
            skip = center_crop(skips[level], x.shape[2:])
            if self.attention is not None:
                skip = self.attention[level](g=x, x=skip)
            x = self.right[level](torch.cat([skip, x], dim=1))
        for up, conv in zip(self.sr_up, self.sr_conv, strict=True):
            x = conv(up(x))
        return x
