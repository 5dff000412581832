"""The global solve of blockwise instance labels, from the region graph's tables.

Given the Parquet tables of :mod:`~dacapo_hydra.inference.graph`, :func:`solve`:

1. selects the edges that merge (`matched`, or a region-graph route's rule: mean
   affinity above the threshold) and takes their connected components (scipy's
   `csgraph.connected_components` on compacted ids, :func:`~dacapo_hydra.tasks.
   instances.region_graph.components`); a fragment in no selected edge is an object
   of its own and appears nowhere in the solve;
2. applies the size filter as a group-by sum: an object's voxels are its fragments'
   `voxels`, summed over every block;
3. numbers the objects 1..n block by block: an object belongs to the block of its
   smallest fragment id, the objects of block b are numbered after those of blocks
   0..b-1 (a prefix sum over blocks), merged objects first, then the block's own;
4. writes the lookup from fragment id to final id for the merged fragments only,
   sorted by id, in Parquet parts with an index of their id ranges, so that a relabel
   task reads only its block's rows, and per block the first id and the count of its
   merged objects.

It reads the node table in batches (memory: the merged fragments, not the volume)
and, on a Dask cluster, runs on a worker, so the driver holds nothing that grows
with the volume. The merged fragments are those on block faces (and, for a
region-graph route, every fragment with a neighbour); the solve's memory is about
:data:`BYTES_PER_EDGE` per selected edge (measured by `scripts/bench_labels.py`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds

from dacapo_hydra.inference.fragments import LabelsPlan
from dacapo_hydra.inference.graph import count_rows, read, scan, table
from dacapo_hydra.tasks.instances.region_graph import components

log = logging.getLogger(__name__)

# Peak bytes of the solve per selected edge (ids, compaction, scipy's sparse graph).
BYTES_PER_EDGE = 120
# Merging edges up to which the solve runs in one process (about 4 GB at BYTES_PER_EDGE);
# beyond, on Dask dataframes (:mod:`~dacapo_hydra.inference.solve_dask`).
MAX_MEMORY_EDGES = 1 << 25
# Rows per lookup part (and its row groups), for relabel tasks that read a block's rows.
LOOKUP_ROWS = 1 << 20


def merging(plan: LabelsPlan) -> ds.Expression:
    """The filter on edge rows that merge, for the plan's route."""
    if plan.route is not None:
        return ds.field("aff_mean") > float(plan.route.threshold)
    return ds.field("matched")


def solve(plan: LabelsPlan, graph: Path, out: Path) -> dict[str, Any]:
    """Merge, size-filter and number the objects; write the lookup to `out`.

    Args:
        plan: the labelling's plan (route, grid, channels, `min_size`).
        graph: the region graph's folder.
        out: the folder of the lookup (`lookup/*.parquet`, `index.json`, `blocks.npz`).

    Returns:
        `objects`, `merged_fragments`, `edges` (selected), `method`.

    """
    min_size = max(1, int(plan.params.get("min_size", 0)))
    edges = read(graph, "edges", ["u", "v"], merging(plan))
    ids, roots = components(edges["u"].astype(np.uint64), edges["v"].astype(np.uint64))
    log.info(
        "global solve: %d merging edges over %d fragments, in memory", len(edges["u"]), len(ids)
    )
    blocks = len(plan.grid)
    component_voxels = np.zeros(ids.size, np.int64)
    singles = np.zeros(blocks, np.int64)
    for batch in scan(graph, "nodes", ["id", "block", "voxels"]):
        at = np.clip(np.searchsorted(ids, batch["id"]), 0, max(ids.size - 1, 0))
        merged = (ids[at] == batch["id"]) if ids.size else np.zeros(batch["id"].size, bool)
        np.add.at(component_voxels, at[merged], batch["voxels"][merged])
        alone = ~merged & (batch["voxels"] >= min_size)
        singles += np.bincount(batch["block"][alone], minlength=blocks)
    # Objects of merged fragments: one per root, voxels summed over its fragments.
    unique_roots, root_of = np.unique(roots, return_inverse=True)
    root_voxels = np.bincount(
        root_of.ravel(), weights=component_voxels, minlength=unique_roots.size
    )
    survive = root_voxels >= min_size
    owner = plan.block_of(unique_roots)
    owned = np.bincount(owner[survive], minlength=blocks)
    first = np.cumsum(owned + singles) - (owned + singles)
    final_of_root = np.zeros(unique_roots.size, np.uint64)
    kept_owner = owner[survive]
    # Roots are sorted, so owners are too: the rank in a block is the distance to its first.
    rank = np.arange(kept_owner.size) - np.searchsorted(kept_owner, kept_owner)
    final_of_root[survive] = (first[kept_owner] + rank + 1).astype(np.uint64)
    write_lookup(out, ids, final_of_root[root_of.ravel()], first, owned)
    return {
        "objects": int((owned + singles).sum()),
        "merged_fragments": int(ids.size),
        "edges": int(len(edges["u"])),
        "method": "scipy.sparse.csgraph in memory",
    }


def write_lookup(
    out: Path, ids: np.ndarray, final: np.ndarray, first: np.ndarray, owned: np.ndarray
) -> None:
    """Write the merged fragments' final ids in parts with their id ranges, atomically."""
    import pyarrow.parquet as pq

    folder = out / "lookup"
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for n, start in enumerate(range(0, ids.size, LOOKUP_ROWS)):
        part = slice(start, start + LOOKUP_ROWS)
        path = folder / f"part-{n:06d}.parquet"
        tmp = folder / f".part-{n:06d}.tmp"
        pq.write_table(table({"id": ids[part], "final": final[part]}), tmp, row_group_size=1 << 14)
        os.replace(tmp, path)
        index.append([path.name, int(ids[part][0]), int(ids[part][-1])])
    write_index(out, index, first, owned)


def write_index(out: Path, index: list[list], first: np.ndarray, owned: np.ndarray) -> None:
    """Per block first ids and merged counts, then the lookup's index (last: it commits)."""
    tmp = out / f".blocks.{os.getpid()}.npz"
    with open(tmp, "wb") as f:
        np.savez(f, first=first, owned=owned)
    os.replace(tmp, out / "blocks.npz")
    tmp = out / ".index.json.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, out / "index.json")


def count_merging(plan: LabelsPlan, graph: Path) -> int:
    """Edges the solve will hold (to choose where it runs and to log)."""
    return count_rows(graph, "edges", merging(plan))
