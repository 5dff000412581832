"""The global solve on Dask dataframes, for region graphs larger than one process holds.

The same four steps as :func:`~dacapo_hydra.inference.solve.solve`, with the same
numbering (so both give the same labels), on partitioned tables that Dask keeps on
its workers and spills to disk:

1. connected components by label propagation with pointer jumping: every fragment
   starts with the smallest id among itself and its neighbours, then repeatedly
   takes the smallest label among its neighbours' labels, and jumps to its label's
   label; this converges to each component's smallest id in a number of rounds
   that grows with the logarithm of the component's diameter in practice (every
   round is a join and a group-by, logged). Dask has no connected components of
   its own, so this loop is written here;
2. the size filter as a group-by sum of the fragments' voxels per root;
3. objects numbered by the block of their root (a prefix sum over blocks, which is
   a NumPy array of one number per block) and their rank among that block's;
4. the lookup written sorted by fragment id, in Parquet parts, with the id range
   of each part.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dacapo_hydra.inference.fragments import LabelsPlan

log = logging.getLogger(__name__)

# Rounds of label propagation before giving up (a chain of 2^40 fragments).
MAX_ROUNDS = 64


def _filters(plan: LabelsPlan) -> list[tuple[str, str, Any]]:
    """The merging edges as a Parquet row filter (as :func:`.solve.merging`)."""
    if plan.route is not None:
        return [("aff_mean", ">", float(plan.route.threshold))]
    return [("matched", "==", True)]


def propagate(edges: Any) -> Any:
    """A Dask dataframe of fragments (`node`) and their component's smallest id (`root`).

    Args:
        edges: Dask dataframe of merging edges (`u`, `v`).

    """
    import dask.dataframe as dd

    both = dd.concat(
        [
            edges.rename(columns={"u": "a", "v": "b"}),
            edges.rename(columns={"v": "a", "u": "b"}),
        ]
    ).persist()
    start = both.groupby("a").b.min().reset_index()
    label = start.assign(root=start[["a", "b"]].min(axis=1))[["a", "root"]]
    label = label.rename(columns={"a": "node"}).persist()
    for rounds in range(1, MAX_ROUNDS + 1):
        theirs = label.rename(columns={"node": "b", "root": "seen"})
        seen = both.merge(theirs, on="b").groupby("a").seen.min().reset_index()
        hooked = label.merge(seen.rename(columns={"a": "node"}), on="node")
        lower = hooked.assign(root=hooked[["root", "seen"]].min(axis=1))[["node", "root"]]
        jump = lower.rename(columns={"node": "root", "root": "next"})
        jumped = lower.merge(jump, on="root")[["node", "next"]].rename(columns={"next": "root"})
        jumped = jumped.persist()
        compared = jumped.merge(label.rename(columns={"root": "old"}), on="node")
        changed = int((compared.root != compared.old).sum().compute())
        label = jumped
        log.info("label propagation: round %d, %d labels changed", rounds, changed)
        if not changed:
            return label
    raise RuntimeError(f"label propagation did not converge in {MAX_ROUNDS} rounds")


def _write_lookup(roots: Any, finals: Any, out: Path) -> list[list[Any]]:
    """Write each fragment's final id (0: filtered out) under `out/lookup`, sorted by id.

    Args:
        roots: Dask dataframe of fragments (`node`) and their component's `root`.
        finals: Dask dataframe of the kept roots (`root`) and their final ids (`final`).
        out: the solve's folder.

    Returns:
        Per Parquet part: its file name and the smallest and largest id it holds.

    """
    lookup = roots.merge(finals, on="root", how="left")
    lookup = lookup.assign(final=lookup.final.fillna(0).astype(np.uint64))
    lookup = lookup.rename(columns={"node": "id"})[["id", "final"]].set_index("id")
    folder = out / "lookup"
    lookup.to_parquet(str(folder), write_index=True, overwrite=True)
    index = []
    for path in sorted(folder.glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        column = meta.schema.names.index("id")
        stats = [meta.row_group(g).column(column).statistics for g in range(meta.num_row_groups)]
        if meta.num_rows:
            index.append(
                [path.name, min(int(x.min) for x in stats), max(int(x.max) for x in stats)]
            )
    return index


def solve_dask(plan: LabelsPlan, graph: Path, out: Path) -> dict[str, Any]:
    """Merge, size-filter and number the objects on Dask dataframes; write the lookup.

    Same arguments, files and result as :func:`~dacapo_hydra.inference.solve.solve`.
    """
    import dask.dataframe as dd

    from dacapo_hydra.inference.solve import write_index

    min_size = max(1, int(plan.params.get("min_size", 0)))
    edges = dd.read_parquet(str(graph / "edges"), columns=["u", "v"], filters=_filters(plan))
    roots = propagate(edges)
    nodes = dd.read_parquet(str(graph / "nodes"), columns=["id", "block", "voxels"])
    merged = nodes.merge(roots.rename(columns={"node": "id"}), on="id")
    blocks = len(plan.grid)

    def per_block(frame: Any) -> np.ndarray:
        counts = frame.groupby("block").size().compute()
        out = np.zeros(blocks, np.int64)
        out[counts.index.to_numpy()] = counts.to_numpy()
        return out

    big = nodes.voxels >= min_size
    singles = per_block(nodes[big]) - per_block(merged[merged.voxels >= min_size])
    voxels = merged.groupby("root").voxels.sum()
    kept = voxels[voxels >= min_size].to_frame("voxels").reset_index()
    kept["owner"] = kept.root.map_partitions(
        lambda r: pd.Series(plan.block_of(r.to_numpy()), index=r.index), meta=("owner", np.int64)
    )
    kept = kept.set_index("root").persist()
    owned = np.zeros(blocks, np.int64)
    counts = kept.groupby("owner").size().compute()
    owned[counts.index.to_numpy()] = counts.to_numpy()
    first = np.cumsum(owned + singles) - (owned + singles)
    before = np.cumsum(owned) - owned
    # Global rank of each root in id order: partition offsets plus the rank inside.
    lengths = kept.map_partitions(len).compute().to_numpy()
    offsets = np.cumsum(lengths) - lengths

    def number(part: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
        start = offsets[partition_info["number"]] if partition_info else 0
        owner = part.owner.to_numpy()
        rank = start + np.arange(len(part)) - before[owner]
        return pd.DataFrame({"final": (first[owner] + rank + 1).astype(np.uint64)}, part.index)

    finals = kept.map_partitions(number, meta={"final": np.uint64}).reset_index()
    write_index(out, _write_lookup(roots, finals, out), first, owned)
    return {
        "objects": int((owned + singles).sum()),
        "merged_fragments": int(len(roots)),
        "edges": int(len(edges)),
        "method": "label propagation on Dask dataframes",
    }
