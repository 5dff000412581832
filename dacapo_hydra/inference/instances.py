"""The four passes of blockwise instance labels (see :mod:`~dacapo_hydra.inference.labels`).

Fragments and their region-graph rows, edges across faces, the global solve (in one
process where its merging edges fit, else on Dask dataframes), and the relabelling;
each pass resumable, all on the caller's Dask client.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from dacapo_hydra.inference.faces import FaceEdges
from dacapo_hydra.inference.fragments import BlockLabeller, LabelsPlan, create_views
from dacapo_hydra.inference.graph import GraphWriter
from dacapo_hydra.inference.ledgers import BlockLog
from dacapo_hydra.inference.options import Execution
from dacapo_hydra.inference.relabel import BlockRelabeller
from dacapo_hydra.inference.solve import count_merging, solve
from dacapo_hydra.inference.solve_dask import solve_dask

log = logging.getLogger(__name__)


@dataclass
class InstancePasses:
    """The passes of one instance labelling.

    Attributes:
        plan: the labelling's plan.
        scratch: its folder of ledgers, fragments, views, graph and solution.
        run_pass: runs a worker over every block with a ledger (worker, ledger,
            execution, client, name).
        max_memory_edges: merging edges up to which the solve runs in one process.
        blocks_per_part: blocks per Parquet part of the graph's tables.

    """

    plan: LabelsPlan
    scratch: Path
    run_pass: Callable[..., None]
    max_memory_edges: int
    blocks_per_part: int

    def run(
        self, out_path: tuple[str, str], execution: Execution | None, client: Any
    ) -> dict[str, Any]:
        """The four passes of instance labels (see the module docstring)."""
        plan = self.plan
        fragments = (str(self.scratch), "fragments.zarr")
        path = Path(fragments[0]) / fragments[1]
        if not path.exists():
            zarr.create_array(
                str(path),
                shape=(plan.channels, *plan.shape),
                chunks=(plan.channels, *plan.write_shape),
                dtype="uint64",
                fill_value=0,
            )
        create_views(plan, self.scratch)
        graph = self.scratch / "graph"
        labeller = BlockLabeller(plan, fragments, self.scratch)
        self.run_pass(
            labeller,
            GraphWriter(graph, plan.grid, "fragments", self.blocks_per_part),
            execution,
            client,
            "fragments",
        )
        faces = FaceEdges(plan, fragments, self.scratch)
        self.run_pass(
            faces,
            GraphWriter(graph, plan.grid, "faces", self.blocks_per_part),
            execution,
            client,
            "faces",
        )
        solution = self.scratch / "solution"
        record = solution / "summary.json"
        if not record.exists():
            started = time.perf_counter()
            summary = self._solve(graph, solution, client)
            summary["seconds"] = time.perf_counter() - started
            write_json(record, summary)
        summary = json.loads(record.read_text())
        log.info("global solve: %s", summary)
        relabeller = BlockRelabeller(plan, fragments, out_path, solution)
        self.run_pass(
            relabeller,
            BlockLog(self.scratch / "relabel.log", plan.grid),
            execution,
            client,
            "relabel",
        )
        return {"objects": summary["objects"], "graph": str(graph), "solve": summary}

    def _solve(self, graph: Path, solution: Path, client: Any) -> dict[str, Any]:
        """The global solve, in one process where its edges fit, else on Dask dataframes."""
        plan = self.plan
        # Counting scans the edges' columns: on a worker, so the driver reads no graph.
        edges = (
            count_merging(plan, graph)
            if client is None
            else client.submit(count_merging, plan, graph, pure=False).result()
        )
        if edges > self.max_memory_edges:
            log.info(
                "global solve: %d merging edges > %d (max_memory_edges): label propagation "
                "on Dask dataframes",
                edges,
                self.max_memory_edges,
            )
            return solve_dask(plan, graph, solution)
        log.info("global solve: %d merging edges: scipy's connected components in memory", edges)
        if client is not None:
            # On a cluster the solve runs on a worker: the driver holds none of the graph.
            return client.submit(solve, plan, graph, solution, pure=False).result()
        return solve(plan, graph, solution)


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write `value` as JSON to `path` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
