"""Crop shape and batch size from a memory budget, with the network's own shape arithmetic.

The activations a U-Net keeps for the backward pass dominate its memory: per
level, the convolutions' outputs and their activations, the pooled copy and, on
the way up, the upsampled and concatenated features, each `fmaps x voxels`
values, and as much again for their gradients (:func:`activation_bytes`). The
planner starts from the labelled extent (at most `MAX_EDGE` voxels of the finest
axis' size, in nm, per axis) and shrinks the axis widest in nm, snapping to a
valid input shape each time, until a batch of `MIN_BATCH` fits the budget; a GPU
then fills what is left with a larger batch (`MAX_BATCH_GPU`), a CPU keeps
`MIN_BATCH` (a step on a CPU is time-bound: a larger crop, not a larger batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dacapo_hydra.planning.topology import CONVS_PER_LEVEL, Topology

if TYPE_CHECKING:
    from dacapo_hydra.architectures.base import Architecture

BYTES_PER_VALUE = 4  # float32 activations
# Values kept per voxel and feature map for the backward pass, calibrated against a
# CPU's peak RSS for a valid U-Net (the figures: README, "Benchmarks"): 3 per convolution
# above the bottom (output, activation, and the up path's upsampled and concatenated
# share), 2 at it. With 'same' padding on a CPU the peak is several times this count
# (oneDNN's padded copies), so `CPU_BUDGET` is in modelled bytes, not a bound on the
# process's memory.
VALUES_PER_LEVEL = 3 * CONVS_PER_LEVEL
VALUES_AT_BOTTOM = 2 * CONVS_PER_LEVEL
GPU_USABLE = 0.75  # of the device's memory: the rest for CUDA's context, the optimiser, caches
CPU_BUDGET = 128 * 2**20  # modelled bytes: 56 cubed at 8 nm, a step a CPU takes in seconds
MIN_BATCH = 2
MAX_BATCH_GPU = 16
MAX_EDGE = 256  # voxels of the finest axis' size the crop starts from


@dataclass(frozen=True)
class Budget:
    """The memory a training step may use, and where that number comes from."""

    bytes: int
    device: str  # "gpu" or "cpu"
    reason: str


@dataclass(frozen=True)
class Crop:
    """The training input shape, batch size and the memory a step takes.

    Attributes:
        input_shape: voxels per axis of the network's training input.
        eval_input_shape: a larger valid input for prediction.
        output_shape: voxels per axis out.
        batch_size: crops per step.
        step_bytes: the activation memory of one step (:func:`activation_bytes` x batch).
        reason: how the shape and batch were chosen.

    """

    input_shape: tuple[int, ...]
    eval_input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    batch_size: int
    step_bytes: int
    reason: str


def device_budget(gpu_bytes: int | None = None) -> Budget:
    """The budget of this machine: `GPU_USABLE` of the first GPU's memory, else `CPU_BUDGET`.

    Args:
        gpu_bytes: a GPU's memory to plan for (None: ask torch; 0: plan for a CPU).

    """
    if gpu_bytes is None:
        import torch

        if torch.cuda.is_available():
            gpu_bytes = int(torch.cuda.get_device_properties(0).total_memory)
    if gpu_bytes:
        usable = int(gpu_bytes * GPU_USABLE)
        return Budget(
            usable,
            "gpu",
            f"{GPU_USABLE:.0%} of the GPU's {gpu_bytes / 2**30:.1f} GiB",
        )
    return Budget(CPU_BUDGET, "cpu", f"no GPU: {CPU_BUDGET / 2**20:.0f} MiB per CPU step")


def fmaps_per_level(num_fmaps: int, fmap_inc_factor: int, levels: int) -> list[int]:
    """Feature maps at each level, top to bottom (`levels + 1`)."""
    return [num_fmaps * fmap_inc_factor**level for level in range(levels + 1)]


def activation_bytes(input_shape: Sequence[int], topology: Topology, fmaps: Sequence[int]) -> int:
    """Activation memory (bytes) of one crop through the U-Net, forward and backward.

    Example:
        >>> from dacapo_hydra.planning.topology import plan_topology
        >>> t = plan_topology((8.0, 8.0), 16.0, min_levels=1, max_levels=1)
        >>> activation_bytes((100, 100), t, [12, 24])
        3840000

    """
    voxels = float(math.prod(input_shape))
    total = 0.0
    for level, count in enumerate(fmaps):
        last = level == len(fmaps) - 1
        total += (VALUES_AT_BOTTOM if last else VALUES_PER_LEVEL) * count * voxels
        if not last:
            voxels /= math.prod(topology.downsample_factors[level])
    return int(total * BYTES_PER_VALUE)


def shape_network(topology: Topology, padding: str = "valid") -> Architecture:
    """A one-feature-map CNNectome U-Net of `topology`: its valid-shape arithmetic, cheaply."""
    from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet

    node = topology.cnnectome()
    # The input of a bottom of 16 voxels (after its convolutions) is valid on every axis:
    # it divides on the way down and outgrows every level's convolutions on the way up.
    kernels = node["kernel_size_down"]
    valid = padding == "valid"
    shape = []
    for axis in range(len(topology.voxel_size)):
        size = 16 + valid * sum(k[axis] - 1 for k in kernels[-1])
        for level in reversed(range(topology.levels)):
            factor = topology.downsample_factors[level][axis]
            size = size * factor + valid * sum(k[axis] - 1 for k in kernels[level])
        shape.append(size)
    return CNNectomeUNet(
        input_shape=shape,
        dims=len(shape),
        num_fmaps=1,
        fmap_inc_factor=1,
        downsample_factors=node["downsample_factors"],
        kernel_size_down=node["kernel_size_down"],
        kernel_size_up=node["kernel_size_up"],
        padding=padding,
    )


def _shrink_to_budget(
    net: Architecture,
    shape: list[int],
    smallest: Sequence[int],
    topology: Topology,
    fmaps: Sequence[int],
    budget: Budget,
) -> tuple[list[int], bool]:
    """Shrink `shape` along its widest axis (nm) until a batch of MIN_BATCH fits `budget`.

    Returns:
        The valid crop shape, and whether it was shrunk.

    Raises:
        ValueError: the smallest valid crop does not fit the budget.

    """
    shape = list(shape)
    dims = len(shape)
    shrunk = False
    while activation_bytes(shape, topology, fmaps) * MIN_BATCH > budget.bytes:
        widths = [s * v for s, v in zip(shape, topology.voxel_size, strict=True)]
        axes = [a for a in range(dims) if shape[a] > smallest[a]]
        if not axes:
            raise ValueError(
                f"plan: the smallest valid crop {tuple(smallest)} needs "
                f"{activation_bytes(smallest, topology, fmaps) * MIN_BATCH / 2**20:.0f} MiB "
                f"for a batch of {MIN_BATCH}; the budget is {budget.bytes / 2**20:.0f} MiB"
            )
        axis = max(axes, key=lambda a: (widths[a], a))
        near = list(shape)
        near[axis] = max(smallest[axis], shape[axis] - 1)
        shape[axis] = net.valid_input_shape(near, "down")[axis]
        shrunk = True
    return shape, shrunk


def plan_crop(
    topology: Topology,
    fmaps: Sequence[int],
    budget: Budget,
    extent_voxels: Sequence[int],
    padding: str = "valid",
) -> Crop:
    """The largest crop (then batch) whose step fits `budget`.

    Args:
        topology: the network's levels and kernels.
        fmaps: feature maps per level.
        budget: bytes a step may take.
        extent_voxels: the labelled extent per axis (the crop need not be larger).
        padding: the network's (`valid` or `same`).

    Raises:
        ValueError: the smallest valid crop does not fit the budget.

    """
    net = shape_network(topology, padding)
    dims = len(extent_voxels)
    smallest = net.valid_input_shape((1,) * dims, "up")
    finest = min(topology.voxel_size)
    cap = [max(1, round(MAX_EDGE * finest / v)) for v in topology.voxel_size]
    start = [max(s, min(c, e)) for s, c, e in zip(smallest, cap, extent_voxels, strict=True)]
    shape = (
        list(net.valid_input_shape(start, "down"))
        if all(s >= m for s, m in zip(start, smallest, strict=True))
        else list(smallest)
    )
    shape, shrunk = _shrink_to_budget(net, shape, smallest, topology, fmaps, budget)
    step = activation_bytes(shape, topology, fmaps)
    if budget.device == "gpu":
        batch = max(MIN_BATCH, min(MAX_BATCH_GPU, budget.bytes // step))
    else:
        batch = MIN_BATCH
    eval_near = [max(s, min(2 * s, e)) for s, e in zip(shape, extent_voxels, strict=True)]
    eval_shape = net.valid_input_shape(eval_near, "down")
    why = (
        f"the labelled extent (at most {MAX_EDGE} x {finest:g} nm per axis)"
        f"{', shrunk' if shrunk else ''} until {MIN_BATCH} crops fit {budget.reason} "
        f"({step * MIN_BATCH / 2**20:.0f} MiB)"
    )
    if budget.device == "gpu":
        why += f"; batch {batch}: as many as fit, at most {MAX_BATCH_GPU}"
    else:
        why += f"; batch {MIN_BATCH}: a CPU step is time-bound"
    return Crop(
        tuple(shape),
        tuple(eval_shape),
        tuple(net.output_shape(shape)),
        int(batch),
        int(step * batch),
        why,
    )
