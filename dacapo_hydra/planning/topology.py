"""A U-Net's topology from the voxel size and the object size, in the manner of nnU-Net.

nnU-Net's planner (Isensee et al., 2021) pools an axis only while its spacing is
within a factor two of the finest, and uses 3-wide kernels only there (1 on a
coarse axis), so an anisotropic stack is pooled in-plane until its in-plane
spacing comes near the coarse one. Here the depth follows the objects rather
than the patch: levels are added until the receptive field spans a few object
radii along the finest axes (`RADII`), between `MIN_LEVELS` and `MAX_LEVELS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The receptive field should span this many object radii (two diameters) in-plane.
RADII = 4.0
MIN_LEVELS = 2
MAX_LEVELS = 4
# An axis pools, and gets 3-wide kernels, while its spacing is below this times the finest.
POOL_RATIO = 2.0
CONVS_PER_LEVEL = 2


@dataclass(frozen=True)
class Topology:
    """Downsampling factors and kernels per level, and the receptive field they give.

    Attributes:
        downsample_factors: per level, a factor per axis (`len = levels`).
        kernels: per level (`levels + 1`, the bottom last), the kernel per axis.
        receptive_field: voxels per axis one output voxel sees.
        voxel_size: nm per axis of the input.
        reason: why this depth.

    """

    downsample_factors: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    receptive_field: tuple[int, ...]
    voxel_size: tuple[float, ...]
    reason: str

    @property
    def levels(self) -> int:
        """Downsampling steps."""
        return len(self.downsample_factors)

    @property
    def total_factor(self) -> tuple[int, ...]:
        """The product of the downsampling factors per axis."""
        total = [1] * len(self.voxel_size)
        for factors in self.downsample_factors:
            total = [t * f for t, f in zip(total, factors, strict=True)]
        return tuple(total)

    @property
    def receptive_field_nm(self) -> tuple[float, ...]:
        """The receptive field in nm per axis."""
        return tuple(r * v for r, v in zip(self.receptive_field, self.voxel_size, strict=True))

    def cnnectome(self) -> dict[str, object]:
        """The CNNectome U-Net keys (conf/architecture/cnnectome_unet.yaml) of this topology."""
        down = [[list(k)] * CONVS_PER_LEVEL for k in self.kernels]
        return {
            "downsample_factors": [list(f) for f in self.downsample_factors],
            "kernel_size_down": down,
            "kernel_size_up": down[:-1],
        }

    def monai(self, base_channels: int) -> dict[str, object]:
        """MONAI UNet's `channels` and `strides` (one kernel for all levels: its finest).

        MONAI's UNet takes one kernel size for every level, so a coarse axis gets the
        top level's kernel (1 where it is coarse there) on every level.
        """
        return {
            "channels": [base_channels * 2**i for i in range(self.levels + 1)],
            "strides": [list(f) for f in self.downsample_factors],
            "kernel_size": list(self.kernels[0]),
            "up_kernel_size": list(self.kernels[0]),
        }


def level_kernel(spacing: Sequence[float]) -> tuple[int, ...]:
    """3 on axes whose spacing is within `POOL_RATIO` of the finest, 1 on coarser ones."""
    finest = min(spacing)
    return tuple(3 if s / finest < POOL_RATIO else 1 for s in spacing)


def level_factor(spacing: Sequence[float]) -> tuple[int, ...]:
    """2 on axes whose spacing is within `POOL_RATIO` of the finest, 1 on coarser ones."""
    finest = min(spacing)
    return tuple(2 if s / finest < POOL_RATIO else 1 for s in spacing)


def receptive_field(
    factors: Sequence[Sequence[int]], kernels: Sequence[Sequence[int]], convs: int = CONVS_PER_LEVEL
) -> tuple[int, ...]:
    """Voxels per axis an output voxel of a U-Net of valid convolutions sees.

    Each convolution at a level whose voxels are `S` input voxels wide adds
    `(k - 1) * S`: the down and the up path at every level but the bottom.

    Example:
        >>> receptive_field([(2, 2)], [(3, 3), (3, 3)])
        (17, 17)

    """
    dims = len(kernels[0])
    field = [1] * dims
    stride = [1] * dims
    for level, kernel in enumerate(kernels):
        paths = 1 if level == len(kernels) - 1 else 2
        for a in range(dims):
            field[a] += paths * convs * (kernel[a] - 1) * stride[a]
        if level < len(factors):
            stride = [s * f for s, f in zip(stride, factors[level], strict=True)]
    return tuple(field)


def plan_topology(
    voxel_size: Sequence[float],
    radius_nm: float | None,
    *,
    radii: float = RADII,
    min_levels: int = MIN_LEVELS,
    max_levels: int = MAX_LEVELS,
) -> Topology:
    """Levels, factors and kernels for data of `voxel_size` with objects of `radius_nm`.

    Args:
        voxel_size: nm per axis.
        radius_nm: the objects' typical (median) inscribed radius; None: unknown
            (`max_levels`).
        radii: the receptive field to reach along the finest axes, in object radii.
        min_levels: the fewest downsampling steps.
        max_levels: the most.

    Example:
        >>> t = plan_topology((40.0, 4.0, 4.0), 200.0)
        >>> t.downsample_factors
        ((1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2))

    """
    voxel_size = tuple(float(v) for v in voxel_size)
    fine = [a for a, v in enumerate(voxel_size) if v == min(voxel_size)]
    target = None if radius_nm is None else radii * radius_nm
    spacing = list(voxel_size)
    factors: list[tuple[int, ...]] = []
    kernels: list[tuple[int, ...]] = [level_kernel(spacing)]
    while True:
        field = receptive_field(factors, kernels)
        reached = target is not None and all(field[a] * voxel_size[a] >= target for a in fine)
        if len(factors) >= max_levels or (reached and len(factors) >= min_levels):
            break
        factor = level_factor(spacing)
        factors.append(factor)
        spacing = [s * f for s, f in zip(spacing, factor, strict=True)]
        kernels.append(level_kernel(spacing))
    field_nm = field[fine[0]] * voxel_size[fine[0]]
    if target is None:
        why = f"object size unknown: {max_levels} levels"
    elif reached and len(factors) > min_levels:
        why = f"receptive field {field_nm:.0f} nm >= {radii:g} object radii ({target:.0f} nm)"
    elif reached:
        why = f"the fewest levels ({min_levels}) see {field_nm:.0f} nm >= {target:.0f} nm wanted"
    else:
        why = f"{max_levels} levels (the most) see {field_nm:.0f} nm of {target:.0f} nm wanted"
    coarse = [a for a, k in enumerate(kernels[0]) if k == 1]
    if coarse:
        why += (
            f"; axis {coarse} coarse: kernel 1 and no pooling there until the others' "
            f"voxels reach within {POOL_RATIO:g}x of it"
        )
    return Topology(tuple(factors), tuple(kernels), field, voxel_size, why)
