"""Properties of block grids: write regions partition the ROI, reads hold their context.

A :class:`~dacapo_hydra.inference.blocks.BlockGrid` tiles a ROI; prediction
(:class:`~dacapo_hydra.model.plan.BlockPlan`) and post-processing build theirs from
block and chunk shapes. Whatever the ROI, voxel grid, block shape and context,
every voxel of the ROI is written by exactly one block, blocks write whole chunks
of the output, and each block reads its region grown by the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import Block, BlockGrid
from dacapo_hydra.model.plan import BlockPlan

PROPERTY = settings(max_examples=60, deadline=None, database=None)
VOXEL_SIZES = (1.0, 4.0, 8.0, 0.5, 3.24, 0.3)


@dataclass(frozen=True)
class Case:
    """A ROI on a voxel grid, tiled by blocks of `block` voxels reading `context` more."""

    voxel_size: tuple[float, ...]
    begin: tuple[int, ...]
    shape: tuple[int, ...]
    block: tuple[int, ...]
    context: tuple[int, ...]

    def grid(self) -> BlockGrid:
        """The grid in world units."""
        vs = self.voxel_size
        roi = Roi(
            tuple(b * v for b, v in zip(self.begin, vs, strict=True)),
            tuple(s * v for s, v in zip(self.shape, vs, strict=True)),
        )
        return BlockGrid(
            roi,
            tuple(b * v for b, v in zip(self.block, vs, strict=True)),
            tuple(c * v for c, v in zip(self.context, vs, strict=True)),
        )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """1 to 3 axes; blocks of 1 to 12 voxels, ROIs of 1 to 30 voxels (at most 6 blocks per
    axis), context 0 to 5."""
    dims = draw(st.integers(1, 3))

    def axes(lo: int, hi: int) -> tuple[int, ...]:
        return tuple(draw(st.integers(lo, hi)) for _ in range(dims))

    voxel_size = tuple(draw(st.sampled_from(VOXEL_SIZES)) for _ in range(dims))
    block = axes(1, 12)
    shape = tuple(draw(st.integers(1, min(30, 6 * b))) for b in block)
    return Case(voxel_size, axes(-20, 20), shape, block, axes(0, 5))


def voxels(roi: Roi, origin: tuple[float, ...], voxel_size: tuple[float, ...]) -> tuple[slice, ...]:
    """Voxel slices of `roi` from `origin`, checking that it lies on the voxel grid."""
    begin = np.subtract(roi.begin, origin) / voxel_size
    size = np.asarray(roi.shape) / voxel_size
    for value in (*begin, *size):
        assert abs(value - round(value)) < 1e-6, f"{roi} is off the {voxel_size} grid"
    return tuple(slice(round(b), round(b) + round(n)) for b, n in zip(begin, size, strict=True))


def contains_grown(read: tuple[slice, ...], write: tuple[slice, ...], by: tuple[int, ...]) -> bool:
    """Whether voxel slices `read` contain `write` grown by `by` voxels per side."""
    return all(
        r.start <= w.start - g and w.stop + g <= r.stop
        for r, w, g in zip(read, write, by, strict=True)
    )


def coverage(blocks: list[Block], roi: Roi, voxel_size: tuple[float, ...]) -> np.ndarray:
    """How many blocks write each voxel of `roi` (checking each block writes inside it)."""
    shape = tuple(round(s / v) for s, v in zip(roi.shape, voxel_size, strict=True))
    count = np.zeros(shape, np.int64)
    for block in blocks:
        index = voxels(block.write_roi, roi.begin, voxel_size)
        assert all(0 <= i.start < i.stop <= n for i, n in zip(index, shape, strict=True))
        count[index] += 1
    return count


@PROPERTY
@given(cases())
def test_write_regions_partition_the_roi(case: Case) -> None:
    """Every voxel of the ROI is written by exactly one block; no block is empty."""
    grid = case.grid()
    blocks = list(grid)
    assert len(blocks) == len(grid) == math.prod(grid.shape)
    assert grid.shape == tuple(-(-s // b) for s, b in zip(case.shape, case.block, strict=True))
    assert all(not b.write_roi.empty() for b in blocks)
    assert (coverage(blocks, grid.roi, case.voxel_size) == 1).all()
    assert len({b.name for b in blocks}) == len(blocks)


@PROPERTY
@given(cases())
def test_reads_contain_writes_grown_by_the_context_at_one_phase(case: Case) -> None:
    """Each block reads a full block grown by the context (the same shape for all, on the
    block grid's phase), which contains the region it writes grown by the context.

    Compared in voxels: in nm, on a grid such as 3.24 nm, a clipped write region may end
    a float ulp past the read region.
    """
    grid = case.grid()
    vs = case.voxel_size
    read_shape = tuple(b + 2 * c for b, c in zip(case.block, case.context, strict=True))
    for block in grid:
        read = voxels(block.read_roi, grid.roi.begin, vs)
        write = voxels(block.write_roi, grid.roi.begin, vs)
        assert contains_grown(read, write, case.context)
        assert tuple(r.stop - r.start for r in read) == read_shape
        for r, i, b, c in zip(read, block.index, case.block, case.context, strict=True):
            assert r.start == i * b - c


@PROPERTY
@given(cases())
def test_blocks_write_whole_chunks_of_an_output_chunked_by_block(case: Case) -> None:
    """With the output chunked by the block shape from the ROI's begin, each block writes
    inside one chunk, and whole chunks but at the ROI's far end: no chunk has two writers."""
    grid = case.grid()
    for block in grid:
        write = voxels(block.write_roi, grid.roi.begin, case.voxel_size)
        for w, b, n in zip(write, case.block, case.shape, strict=True):
            assert w.start % b == 0 and (w.stop - w.start == b or w.stop == n)


@PROPERTY
@given(cases())
def test_neighbours_are_the_face_adjacent_pairs(case: Case) -> None:
    """neighbours() lists each pair of blocks one step apart along one axis once, and their
    write regions meet on that face."""
    grid = case.grid()
    pairs = list(grid.neighbours())
    expected = sum(
        (n - 1) * math.prod(m for j, m in enumerate(grid.shape) if j != axis)
        for axis, n in enumerate(grid.shape)
    )
    assert len(pairs) == expected == len({(a.index, b.index) for a, b, _ in pairs})
    for lower, upper, axis in pairs:
        step = tuple(u - lo for u, lo in zip(upper.index, lower.index, strict=True))
        assert step == tuple(int(j == axis) for j in range(len(step)))
        assert math.isclose(lower.write_roi.end[axis], upper.write_roi.begin[axis], abs_tol=1e-9)


@st.composite
def plans(draw: st.DrawFn) -> tuple[BlockPlan, Case]:
    """A prediction plan (valid convolutions, or blending windows; output
    upsampled 1 or 2 times) and a ROI on the input's grid."""
    dims = draw(st.integers(1, 3))
    raw_vs = tuple(draw(st.sampled_from(VOXEL_SIZES)) for _ in range(dims))
    up = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    vs = tuple(v / u for v, u in zip(raw_vs, up, strict=True))
    covered = tuple(draw(st.integers(1, 10)) for _ in range(dims))  # input voxels per block
    margin = tuple(draw(st.integers(0, 6)) for _ in range(dims))
    write = tuple(c * u for c, u in zip(covered, up, strict=True))
    if draw(st.booleans()):  # valid convolutions: the input is the output plus context
        inputs = tuple(c + 2 * m for c, m in zip(covered, margin, strict=True))
        plan = BlockPlan(inputs, write, write, raw_vs, vs)
    else:  # 'same' padding: windows of one pass over the ROI, blended
        window = tuple(draw(st.integers(1, 8)) for _ in range(dims))
        out = tuple(w * u for w, u in zip(window, up, strict=True))
        plan = BlockPlan(window, out, write, raw_vs, vs, 0.5)
        margin = (0,) * dims  # a blending block reads the windows touching it, not a margin
    begin = tuple(draw(st.integers(-10, 10)) for _ in range(dims))
    shape = tuple(draw(st.integers(1, 6 * c)) for c in covered)  # at most 6 blocks per axis
    # The ROI on the output grid (begin and shape whole input voxels, as predict checks).
    case = Case(
        vs,
        tuple(b * u for b, u in zip(begin, up, strict=True)),
        tuple(s * u for s, u in zip(shape, up, strict=True)),
        write,
        tuple(m * u for m, u in zip(margin, up, strict=True)),
    )
    return plan, case


@PROPERTY
@given(plans())
def test_prediction_blocks_read_the_plans_input_and_partition_the_output(
    plan_case: tuple[BlockPlan, Case],
) -> None:
    """On the grid predict builds (plan.block_size, plan.context), every block reads
    plan.read_shape input voxels on the input grid, and the write regions partition the
    output ROI in whole output chunks (plan.write_shape)."""
    plan, case = plan_case
    grid = case.grid()
    roi = grid.roi
    predict_grid = BlockGrid(roi, plan.block_size, plan.context)
    assert predict_grid.shape == grid.shape
    assert plan.upsample == tuple(
        o // i for o, i in zip(plan.output_shape, plan.input_shape, strict=True)
    )
    if not plan.blend:
        assert plan.read_shape == plan.input_shape
    blocks = list(predict_grid)
    assert (coverage(blocks, roi, plan.voxel_size) == 1).all()
    for block in blocks:
        read = voxels(block.read_roi, roi.begin, plan.raw_voxel_size)
        assert tuple(r.stop - r.start for r in read) == plan.read_shape
        # In output voxels, the read region holds the write region grown by the context.
        read_out = voxels(block.read_roi, roi.begin, plan.voxel_size)
        write = voxels(block.write_roi, roi.begin, plan.voxel_size)
        assert contains_grown(read_out, write, case.context)
        for w, b, n in zip(write, plan.write_shape, case.shape, strict=True):
            assert w.start % b == 0 and (w.stop - w.start == b or w.stop == n)
