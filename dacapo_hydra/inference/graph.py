"""The region graph of blockwise instance labels, stored out of core in Parquet.

Blocks run on workers and return rows; the driver appends them to tables of an
Apache Parquet dataset (read back with pyarrow or Dask dataframes, or queried with
DuckDB, pandas, Spark) and never holds more than one part's rows:

- `nodes`: one row per fragment: `id` (uint64, unique in the volume: block-offset),
  `block` (the block's C-order position), `voxels`, the bounding box
  (`bbox_min_<axis>`, `bbox_max_<axis>`, voxels of the whole volume, the maximum
  exclusive) and the centroid (`centroid_<axis>`, voxels);
- `edges`: one row per pair of touching fragments: `u` < `v` (uint64 ids), `face`
  (-1 inside a block, else the axis of the block face they meet across), `contact`
  (voxel pairs where they touch), `matched` (the face test of watershed routes:
  their overlap on the face, seen from both blocks, is at least the merge
  fraction of their union; every touching pair for connected components), and the
  boundary affinities between them where the route has them (`aff_count`,
  `aff_sum`, `aff_mean`, `aff_q10`, `aff_q50`, `aff_q90`; NaN otherwise).

Parquet rather than a database: the tables are written once, in parallel, and read
whole by column scans (a group-by, a join, connected components), which is what a
columnar file format does best; any number of writers on a cluster's file system
need no server; the files compress well; and Dask, pandas and DuckDB read them
directly. A table is written in parts of up to :data:`BLOCKS_PER_PART` blocks (or
:data:`PART_BYTES` of rows),
each file atomically (temporary name, rename), then a small manifest naming its
blocks: the manifests are the pass's ledger, so a kill loses at most the part being
gathered, and a rerun redoes exactly those blocks. The hand-written part here is
only that bookkeeping; reading, writing, filtering and aggregating are pyarrow's.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dacapo_hydra.inference.blocks import Block, BlockGrid, BlockResult
from dacapo_hydra.tasks.instances.region_graph import edge_stats

__all__ = ["GraphWriter", "count_rows", "dataset", "edge_stats", "read", "scan", "table"]

# Blocks whose rows are gathered into one Parquet file per table, and the most bytes of
# rows the driver gathers before it writes them (whichever comes first).
BLOCKS_PER_PART = 256
PART_BYTES = 8 << 20
MANIFESTS = "_parts"


def table(columns: dict[str, np.ndarray]) -> pa.Table:
    """A pyarrow table of numpy columns."""
    return pa.table({k: pa.array(np.ascontiguousarray(v)) for k, v in columns.items()})


class GraphWriter:
    """The ledger of a pass that adds rows to graph tables (see the module docstring).

    Args:
        root: the graph's folder (tables are its subfolders).
        grid: the pass's blocks.
        name: the pass (manifests go to `<root>/_parts/<name>/`).
        blocks_per_part: blocks gathered per file.

    """

    def __init__(
        self, root: str | Path, grid: BlockGrid, name: str, blocks_per_part: int = BLOCKS_PER_PART
    ) -> None:
        self.root = Path(root)
        self.grid = grid
        self.name = name
        self.blocks_per_part = blocks_per_part
        self.manifests = self.root / MANIFESTS / name
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.done = np.zeros(len(grid), bool)
        committed = set()
        for manifest in self.manifests.glob("*.json"):
            record = json.loads(manifest.read_text())
            self.done[record["blocks"]] = True
            committed.add(manifest.stem)
        for tables in self.root.iterdir():
            # Files of a part whose manifest was never written (a kill in between).
            for part in tables.glob(f"{name}-*.parquet"):
                if part.stem not in committed:
                    part.unlink()
        self._rows: dict[str, list[pa.Table]] = {}
        self._blocks: list[int] = []
        self._bytes = 0

    def is_done(self, block: Block) -> bool:
        """Whether `block`'s rows are in a committed part."""
        return bool(self.done[self.grid.linear(block)])

    def count(self) -> int:
        """Blocks committed."""
        return int(self.done.sum())

    def record(self, block: Block, result: BlockResult) -> None:
        """Gather a finished block's rows; write a part when enough are gathered."""
        for name, rows in result.tables.items():
            self._rows.setdefault(name, []).append(rows)
        self._blocks.append(self.grid.linear(block))
        self._bytes += sum(rows.nbytes for rows in result.tables.values())
        if len(self._blocks) >= self.blocks_per_part or self._bytes >= PART_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the gathered rows, one file per table, then the manifest that commits them."""
        if not self._blocks:
            return
        stem = f"{self.name}-{min(self._blocks):012d}-{uuid.uuid4().hex[:12]}"
        for name, parts in self._rows.items():
            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            rows = pa.concat_tables(parts)
            tmp = folder / f".{stem}.tmp"
            pq.write_table(rows, tmp, row_group_size=1 << 16)
            os.replace(tmp, folder / f"{stem}.parquet")
        manifest = self.manifests / f"{stem}.json"
        tmp = manifest.with_name(f".{manifest.name}.tmp")
        tmp.write_text(json.dumps({"blocks": sorted(self._blocks)}))
        os.replace(tmp, manifest)
        self.done[self._blocks] = True
        self._rows, self._blocks, self._bytes = {}, [], 0
        # Arrow's allocator keeps freed pages for reuse; hand them back, so the driver's
        # footprint is one part's rows whatever passed through before.
        pa.default_memory_pool().release_unused()

    def close(self) -> None:
        """Write what is gathered."""
        self.flush()


def dataset(root: str | Path, name: str) -> ds.Dataset | None:
    """The table `name` of a graph as a pyarrow dataset (None if no block added rows)."""
    folder = Path(root) / name
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.exists() else []
    return ds.dataset(files, format="parquet") if files else None


def scan(
    root: str | Path,
    name: str,
    columns: Sequence[str],
    filter: ds.Expression | None = None,  # noqa: A002 - pyarrow's name
) -> Iterator[dict[str, np.ndarray]]:
    """Record batches of a table's `columns` (rows passing `filter`) as numpy arrays."""
    data = dataset(root, name)
    if data is None:
        return
    for batch in data.to_batches(columns=list(columns), filter=filter):
        if batch.num_rows:
            yield {c: batch.column(c).to_numpy(zero_copy_only=False) for c in columns}


def count_rows(root: str | Path, name: str, filter: ds.Expression | None = None) -> int:  # noqa: A002
    """Rows of a table (passing `filter`), from the files' metadata where it can."""
    data = dataset(root, name)
    return 0 if data is None else int(data.count_rows(filter=filter))


def read(
    root: str | Path,
    name: str,
    columns: Sequence[str],
    filter: Any = None,  # noqa: A002
) -> dict[str, np.ndarray]:
    """A table's `columns` (rows passing `filter`) as numpy arrays, whole."""
    data = dataset(root, name)
    if data is None:
        return {c: np.zeros(0) for c in columns}
    rows = data.to_table(columns=list(columns), filter=filter)
    return {c: rows.column(c).to_numpy() for c in columns}
