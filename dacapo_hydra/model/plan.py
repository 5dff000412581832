"""The shapes of a prediction block: what one block reads, runs and writes.

Two block geometries (:class:`BlockPlan`):

- valid convolutions (context > 0): one forward pass per block; the context is
  the network's, so tiles join seamlessly.
- 'same' padding (MONAI networks, `padding: same`): the windows are those of one
  MONAI sliding-window pass over the whole prediction ROI
  (:class:`~dacapo_hydra.model.windows.WindowGrid`); a block blends, with
  Gaussian weights, every window that touches it, so blocks agree across their
  faces and the output equals that one pass. A window shared by several blocks is
  computed once per process (:class:`~dacapo_hydra.model.windows.WindowCache`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dacapo_hydra.architectures.base import Architecture

# Prediction's defaults, for every caller: sliding windows of 'same'-padding networks
# overlap by half (MONAI's `overlap`), and a block runs two windows per forward pass
# (MONAI's `sw_batch_size`).
OVERLAP = 0.5
WINDOW_BATCH = 2


@dataclass(frozen=True)
class BlockPlan:
    """Shapes of one prediction block, in voxels and nm.

    Attributes:
        input_shape: one forward pass's input (a sliding window's, when blending).
        output_shape: one forward pass's output.
        write_shape: output voxels written per block (the output's chunk shape).
        raw_voxel_size: input voxel size (nm).
        voxel_size: output voxel size (nm).
        overlap: window overlap (fraction) for 'same'-padding networks; None for
            networks with context (valid convolutions), which don't blend.
        window_batch: 'same'-padding networks: windows per forward pass (MONAI's
            `sw_batch_size`).

    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    write_shape: tuple[int, ...]
    raw_voxel_size: tuple[float, ...]
    voxel_size: tuple[float, ...]
    overlap: float | None = None
    window_batch: int = 1

    @property
    def blend(self) -> bool:
        """Whether blocks blend overlapping windows ('same'-padding networks)."""
        return self.overlap is not None

    @property
    def stride(self) -> tuple[int, ...]:
        """Input voxels between window starts (MONAI's `int(window * (1 - overlap))`)."""
        overlap = self.overlap or 0.0
        return tuple(max(int(i * (1 - overlap)), 1) for i in self.input_shape)

    @property
    def upsample(self) -> tuple[int, ...]:
        """Output voxels per input voxel, per axis."""
        return tuple(o // i for o, i in zip(self.output_shape, self.input_shape, strict=True))

    @property
    def context(self) -> tuple[float, ...]:
        """Nm read beyond the written region on each side.

        None when blending: a block reads the windows that touch it
        (:meth:`~dacapo_hydra.model.windows.WindowGrid.touching`).
        """
        if self.blend:
            return (0.0,) * len(self.input_shape)
        return tuple(
            (i * rv - w * v) / 2
            for i, w, rv, v in zip(
                self.input_shape,
                self.write_shape,
                self.raw_voxel_size,
                self.voxel_size,
                strict=True,
            )
        )

    @property
    def block_size(self) -> tuple[float, ...]:
        """Nm written per block."""
        return tuple(w * v for w, v in zip(self.write_shape, self.voxel_size, strict=True))

    @property
    def read_shape(self) -> tuple[int, ...]:
        """Input voxels read per block."""
        return tuple(
            int(round(b / v + 2 * c / v))
            for b, c, v in zip(self.block_size, self.context, self.raw_voxel_size, strict=True)
        )

    @classmethod
    def for_model(
        cls,
        model: HasArchitecture,
        raw_voxel_size: Sequence[float],
        input_shape: Sequence[int] | None = None,
        overlap: float = OVERLAP,
        block_shape: Sequence[int] | None = None,
        window_batch: int = WINDOW_BATCH,
    ) -> BlockPlan:
        """The plan for a model's eval input shape (or `input_shape`).

        Args:
            model: the trained model (anything with its `architecture`).
            raw_voxel_size: input voxel size (nm).
            input_shape: forward-pass input in voxels (default: the eval shape).
            overlap: for 'same'-padding networks, the fraction by which sliding
                windows overlap (MONAI's `overlap`: stride = int(window * (1 - overlap))).
            block_shape: for 'same'-padding networks, output voxels written per
                block, a multiple of the stride (default: the smallest multiple
                at least twice the window). Networks with context write one
                forward pass's output per block.
            window_batch: for 'same'-padding networks, windows a block computes in one
                forward pass (MONAI's `sw_batch_size`). Two: on 2 CPU cores a BasicUNet
                ran faster per window than one at a time, and four slower; on a GPU
                more may pay.

        Raises:
            ValueError: for a shape the network can't take, an overlap outside
                [0, 1), or a block shape that does not fit.

        """
        arch = model.architecture
        shape = tuple(int(s) for s in (input_shape or arch.eval_input_shape))
        arch.check_input_shape("eval_input_shape (prediction input_shape)", shape)
        out = tuple(arch.output_shape(shape))
        up = tuple(arch.upsample_factor)
        raw_vs = tuple(float(v) for v in raw_voxel_size)
        vs = tuple(v / u for v, u in zip(raw_vs, up, strict=True))
        if not all(i * u == o for i, o, u in zip(shape, out, up, strict=True)):
            if block_shape is not None and tuple(block_shape) != out:
                raise ValueError(
                    f"block_shape {list(block_shape)}: a network with context writes its output "
                    f"shape {list(out)} per block; leave block_shape unset"
                )
            return cls(shape, out, out, raw_vs, vs)
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if isinstance(window_batch, bool) or not isinstance(window_batch, int) or window_batch < 1:
            raise ValueError(f"window_batch must be a whole number >= 1, got {window_batch!r}")
        write = _write_shape(shape, up, overlap, block_shape)
        return cls(shape, out, write, raw_vs, vs, float(overlap), window_batch)


class HasArchitecture(Protocol):
    """A trained model as a plan sees it: its architecture's shape arithmetic."""

    @property
    def architecture(self) -> Architecture:
        """The backbone network."""
        ...


def _write_shape(
    shape: tuple[int, ...],
    up: tuple[int, ...],
    overlap: float,
    block_shape: Sequence[int] | None,
) -> tuple[int, ...]:
    """Output voxels a blending block writes: `block_shape`, checked, or the default.

    Raises:
        ValueError: a block shape that is not a positive multiple of the window stride.

    """
    stride = tuple(max(int(i * (1 - overlap)), 1) for i in shape)
    if block_shape is None:
        return tuple(
            s * math.ceil(2 * i / s) * u for i, s, u in zip(shape, stride, up, strict=True)
        )
    write = tuple(int(b) for b in block_shape)
    if len(write) != len(shape) or any(
        b <= 0 or b % (s * u) for b, s, u in zip(write, stride, up, strict=True)
    ):
        steps = [s * u for s, u in zip(stride, up, strict=True)]
        raise ValueError(
            f"block_shape {list(block_shape)} must be positive multiples of the window "
            f"stride {steps} (output voxels: input_shape {list(shape)} with overlap "
            f"{overlap})"
        )
    return write
