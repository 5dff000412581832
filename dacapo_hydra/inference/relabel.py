"""The last pass of blockwise instance labels: each block's fragments to final ids.

A :class:`BlockRelabeller` reads one block's fragments, the rows of the solve's
lookup (:mod:`~dacapo_hydra.inference.solve`) whose ids fall in the block's id range
(Parquet row groups filtered by id: never the whole lookup), and numbers the block's
own objects (fragments in no merge) after its merged objects, dropping those under
`min_size`. Memory per task: one block.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import zarr

from dacapo_hydra.inference.blocks import Block, BlockWorker
from dacapo_hydra.inference.fragments import LabelsPlan

Opened = tuple[zarr.Array, zarr.Array, list[list], np.ndarray, np.ndarray]


class BlockRelabeller(BlockWorker[Opened]):
    """Maps one block's fragments to final ids and writes the labels.

    Args:
        plan: the labelling's plan (grid, voxel size, channel axis, `min_size`).
        fragments: (container, path) of the fragment array.
        output: (container, path) of the labels' `s0`.
        solution: the solve's folder (`lookup/`, `index.json`, `blocks.npz`).

    """

    def __init__(
        self, plan: LabelsPlan, fragments: tuple[str, str], output: tuple[str, str], solution: Path
    ) -> None:
        self.plan = plan
        self.fragments = fragments
        self.output = output
        self.solution = solution

    def open(self) -> Opened:
        """The fragments, the labels' `s0`, the lookup's index, per block first ids and counts."""
        frag = zarr.open_array(str(Path(self.fragments[0]) / self.fragments[1]), mode="r")
        out = zarr.open_array(str(Path(self.output[0]) / self.output[1]), mode="r+")
        index = json.loads((self.solution / "index.json").read_text())
        with np.load(self.solution / "blocks.npz") as blocks:
            return frag, out, index, blocks["first"], blocks["owned"]

    def lookup(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Merged fragment ids in [lo, hi] (sorted) and their final ids."""
        index = self.opened[2]
        parts = [
            str(self.solution / "lookup" / name) for name, a, b in index if a <= hi and b >= lo
        ]
        if not parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        rows = ds.dataset(parts, format="parquet").to_table(
            filter=(ds.field("id") >= lo) & (ds.field("id") <= hi)
        )
        ids = rows.column("id").to_numpy()
        order = np.argsort(ids)
        return ids[order], rows.column("final").to_numpy()[order]

    def __call__(self, block: Block) -> int:
        """Relabel one block; returns the voxels written."""
        frag, out, _, first, owned = self.opened
        plan = self.plan
        region = block.write_roi.to_slices(plan.grid.roi.begin, plan.source.voxel_size)
        ids = frag[(slice(None), *region)]
        linear = plan.grid.linear(block)
        lo = plan.offset(block, 0) + 1
        hi = plan.offset(block, plan.channels - 1) + plan.ids_per_block
        merged_ids, merged_final = self.lookup(lo, hi)
        present, inverse, voxels = np.unique(ids, return_inverse=True, return_counts=True)
        final = np.zeros(present.size, np.uint64)
        at = np.clip(np.searchsorted(merged_ids, present), 0, max(merged_ids.size - 1, 0))
        merged = (merged_ids[at] == present) if merged_ids.size else np.zeros(present.size, bool)
        final[merged] = merged_final[at[merged]]
        alone = ~merged & (present != 0) & (voxels >= max(1, int(plan.params.get("min_size", 0))))
        final[alone] = first[linear] + owned[linear] + 1 + np.arange(int(alone.sum()))
        labels = final[inverse.reshape(ids.shape)]
        if plan.channel_axis:
            out[(slice(None), *region)] = labels
        else:
            out[region] = labels[0]
        return int(np.prod(ids.shape[1:]))
