"""Ledgers of blockwise passes: one file per pass, torn records and orphan parts ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import BlockGrid, BlockResult
from dacapo_hydra.inference.graph import GraphWriter, count_rows, read, table
from dacapo_hydra.inference.ledgers import BlockLog

GRID = BlockGrid(Roi((0.0, 0.0), (40.0, 30.0)), (10.0, 10.0), (0.0, 0.0))


def test_block_log_keeps_what_it_recorded_in_one_file(tmp_path: Path) -> None:
    blocks = list(GRID)
    log = BlockLog(tmp_path / "pass.log", GRID)
    for block in blocks[3:7]:
        log.record(block, 1)
    # A record torn by a crash: half a position at the end.
    with open(tmp_path / "pass.log", "ab") as f:
        f.write(b"\x01\x02\x03")
    again = BlockLog(tmp_path / "pass.log", GRID)
    assert [again.is_done(b) for b in blocks] == [3 <= i < 7 for i in range(len(blocks))]
    assert again.count() == 4
    assert [p.name for p in tmp_path.iterdir()] == ["pass.log"]
    assert GRID.at(GRID.linear(blocks[5])) == blocks[5]


def rows(block_index: int) -> BlockResult:
    ids = np.arange(3, dtype=np.uint64) + 100 * block_index
    return BlockResult(1, {"nodes": table({"id": ids, "voxels": np.ones(3, np.int64)})})


def test_graph_parts_commit_with_their_manifest_and_orphans_go(tmp_path: Path) -> None:
    blocks = list(GRID)
    writer = GraphWriter(tmp_path, GRID, "fragments", blocks_per_part=4)
    for i, block in enumerate(blocks[:6]):
        writer.record(block, rows(i))
    # Four blocks make a committed part; two are gathered, not written (a kill now loses them).
    assert count_rows(tmp_path, "nodes") == 12
    assert len(list((tmp_path / "nodes").glob("*.parquet"))) == 1
    (tmp_path / "nodes" / "fragments-orphan.parquet").write_bytes(b"not committed")
    resumed = GraphWriter(tmp_path, GRID, "fragments", blocks_per_part=4)
    assert not (tmp_path / "nodes" / "fragments-orphan.parquet").exists()
    assert [resumed.is_done(b) for b in blocks[:6]] == [True] * 4 + [False] * 2
    for i, block in enumerate(blocks[4:], start=4):
        resumed.record(block, rows(i))
    resumed.close()
    ids = np.sort(read(tmp_path, "nodes", ["id"])["id"])
    assert np.array_equal(
        ids, np.sort(np.concatenate([rows(i).tables["nodes"]["id"].to_numpy() for i in range(12)]))
    )
