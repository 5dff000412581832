"""Blockwise post-processing of a prediction into labels, out of core and resumable.

Each block reads the prediction over its region grown by a context (clipped to
the prediction), runs the task's `post_process` with one parameter set, and keeps
its own region. Thresholds and argmax need nothing more. Instance labels
(watershed from affinities or distances, agglomeration, connected components) are
made in four passes, all on the same Dask cluster when there is one, each resumable
after a kill:

1. **fragments** (:mod:`~dacapo_hydra.inference.fragments`): every block labels its
   region with ids offset per block (unique everywhere), writes them, and returns
   its rows of the region graph: its fragments (`nodes`: id, voxels, bounding box,
   centroid) and, for a region-graph route (agglomeration), the edges inside it;
2. **faces** (:mod:`~dacapo_hydra.inference.faces`): every block reads the planes
   that meet at its lower faces and returns the edges across them;
3. **solve** (:mod:`~dacapo_hydra.inference.solve`): connected components of the
   merging edges, the size filter as a group-by sum over blocks, and final ids
   1..n numbered block by block, written as a lookup sharded by id;
4. **relabel** (:mod:`~dacapo_hydra.inference.relabel`): every block maps its
   fragments to final ids, reading only its rows of the lookup.

The region graph is a Parquet dataset (:mod:`~dacapo_hydra.inference.graph`) in
`<container>/.dacapo_blocks/<labels>/graph/` (`nodes/`, `edges/`), kept after the
labels are written so it can be queried. The driver submits blocks in a bounded
window, records finished blocks in one file per pass (or in the graph's part
manifests), and never reads a face, a table or a mapping whole.

What is exact, whatever the block shape (tested by property):

- connected components and the size filter: the labels equal a whole-volume pass
  up to relabelling (touching across a face is merging; sizes are summed globally);
- agglomeration given the fragments: every edge's mean affinity is over the same
  voxel pairs whatever the blocks, and the solve is global; the fragments
  themselves (a watershed inside each block) depend on where faces cut, which only
  changes how a cell is over-segmented before its fragments merge;
- watersheds (mutex, distance, mask) segment each block with context and match
  fragments on faces by IoU (>= `merge_fraction`): they equal a whole-volume pass
  where the context holds the seeds and borders that pass would see, and the
  difference otherwise is bounded by a test (adapted Rand error at two block shapes).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dacapo_hydra.data.output import (
    LEDGER_DIR,
    check_output,
    check_overwritable,
    open_output,
    remove_output,
)
from dacapo_hydra.data.pyramid import write_levels
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.blocks import BlockGrid
from dacapo_hydra.inference.fragments import (
    BlockLabeller,
    LabelsPlan,
    Source,
    is_instance_task,
)
from dacapo_hydra.inference.graph import BLOCKS_PER_PART
from dacapo_hydra.inference.instances import InstancePasses, write_json
from dacapo_hydra.inference.ledgers import BlockLog
from dacapo_hydra.inference.options import Execution, LabelsOptions
from dacapo_hydra.inference.provenance import check_unchanged
from dacapo_hydra.inference.schedule import open_client, run_blocks
from dacapo_hydra.inference.solve import MAX_MEMORY_EDGES
from dacapo_hydra.tasks.base import Params, Task

log = logging.getLogger(__name__)

# Default block edge (voxels) when the prediction's chunks are smaller.
MIN_BLOCK = 64


@dataclass
class LabelsResult:
    """Where the labels went, how many objects, how long it took."""

    container: str
    dataset: str
    roi: Roi
    voxel_size: tuple[float, ...]
    blocks: int
    instances: bool
    objects: int | None
    seconds: float


@dataclass
class LabelsJob:
    """A checked post-processing run; nothing has been written yet.

    Made by :func:`plan_labels`; :meth:`run` creates the output and labels it.
    `overwrite` removes an existing output first; `levels` scale levels are
    written once `s0` is whole (:mod:`dacapo_hydra.data.pyramid`). The global solve
    of instances runs in one process (a Dask worker's, on a cluster) up to
    `max_memory_edges` merging edges, and on Dask dataframes beyond;
    :attr:`figures` holds each pass's figures.
    """

    plan: LabelsPlan
    out_container: str
    out_dataset: str
    overwrite: bool = False
    max_memory_edges: int = MAX_MEMORY_EDGES
    blocks_per_part: int = BLOCKS_PER_PART
    figures: dict[str, Any] = field(default_factory=dict)
    levels: int = 1

    @property
    def scratch(self) -> Path:
        """Ledgers and intermediate files of this output."""
        return Path(self.out_container) / LEDGER_DIR / self.out_dataset

    def create_output(self) -> zarr.Array:
        """Create (or reopen, to resume) the labels' array; with `overwrite`, afresh."""
        plan = self.plan
        if self.overwrite:
            remove_output(self.out_container, self.out_dataset)
            self.overwrite = False  # once: a second run resumes what the first made
        # Integer outputs (instances, masks, classes) are segmentations: label images.
        return open_output(
            self.out_container,
            self.out_dataset,
            plan.source.roi,
            plan.source.voxel_size,
            plan.channels if plan.channel_axis else None,
            plan.dtype.name,
            plan.write_shape,
            {"post_process": dict(plan.params)},
            label=plan.dtype.kind in "biu",
        )

    def run(self, execution: Execution | None = None, client: Any = None) -> float:
        """Post-process every block not yet done; returns the objects (instances) or NaN.

        `client`: a Dask client shared with the command's other passes (default: one
        for all the passes of this labelling when `execution` is not in process).
        """
        plan = self.plan
        self.create_output()
        out_path = (self.out_container, f"{self.out_dataset}/s0")
        done = self.scratch / "complete"
        if done.exists():
            write_levels(self.out_container, self.out_dataset, self.levels)
            return float(json.loads(done.read_text())["objects"] if plan.instances else "nan")
        with open_client(execution, client) as client:
            if not plan.instances:
                labeller = BlockLabeller(plan, out_path, None)
                ledger = BlockLog(self.scratch / "write.log", plan.grid)
                self._pass(labeller, ledger, execution, client, "labels")
                write_levels(self.out_container, self.out_dataset, self.levels)
                return float("nan")
            passes = InstancePasses(
                plan, self.scratch, self._pass, self.max_memory_edges, self.blocks_per_part
            )
            summary = passes.run(out_path, execution, client)
            self.figures["solve"] = summary["solve"]
        write_levels(self.out_container, self.out_dataset, self.levels)
        write_json(done, summary)
        shutil.rmtree(self.scratch / "fragments.zarr", ignore_errors=True)
        shutil.rmtree(self.scratch / "views.zarr", ignore_errors=True)
        return float(summary["objects"])

    def _pass(
        self, worker: Any, ledger: Any, execution: Execution | None, client: Any, name: str
    ) -> None:
        """One pass over every block; its figures are kept in :attr:`figures`."""
        grid = self.plan.grid
        figures = run_blocks(worker, grid, ledger, execution, name, total=len(grid), client=client)
        self.figures[name] = figures


def plan_labels(
    task: Task,
    params: Params,
    source: Source,
    out_container: str | Path,
    out_dataset: str,
    options: LabelsOptions | None = None,
    **fields: Any,
) -> LabelsJob:
    """Check a post-processing run and plan its blocks; writes nothing.

    Args:
        task: the run's task (its `post_process`).
        params: the parameter set (e.g. the best one validation found).
        source: the prediction.
        out_container: labels container.
        out_dataset: labels group; the array is `<out_dataset>/s0`. Integer labels are
            written as an OME-Zarr label image; at `<image>/labels/<name>` (e.g.
            `prediction/labels/labels`) they are listed among that image's labels.
        options: block shape, context, connected components, merge fraction,
            overwrite, levels (:class:`~dacapo_hydra.inference.options.LabelsOptions`).
        **fields: fields of :class:`~dacapo_hydra.inference.options.LabelsOptions`
            given one by one, replacing those of `options`.

    Raises:
        ValueError: naming a block shape, a parameter set or an output that does not fit.

    """
    options = replace(options or LabelsOptions(), **fields)
    plan = _labels_plan(task, params, source, options)
    if options.overwrite:
        check_overwritable(out_container, out_dataset)
    elif check_output(
        out_container,
        out_dataset,
        (plan.channels, *plan.shape) if plan.channel_axis else plan.shape,
        plan.dtype,
        (plan.channels, *plan.write_shape) if plan.channel_axis else plan.write_shape,
        source.voxel_size,
        source.roi.begin,
    ):
        # The record the labels' group was created with (:meth:`LabelsJob.create_output`).
        check_unchanged(out_container, out_dataset, "post_process", dict(params))
    levels = source.levels if options.levels is None else options.levels
    return LabelsJob(plan, str(out_container), out_dataset, options.overwrite, levels=levels)


def _labels_plan(task: Task, params: Params, source: Source, options: LabelsOptions) -> LabelsPlan:
    """What every block does: its grid and context, the labels' dtype and channels."""
    block = _block_shape(options.block_shape, source)
    connected = options.connected_components
    instances = connected or is_instance_task(task)
    route = task.graph_route(params) if instances and not connected else None
    across_faces = connected or route is not None
    margin = _context(options.context, task, source, block, instances, across_faces)
    full = source.roi.voxel_shape(source.voxel_size)
    shape = tuple(min(b + 2 * m, f) for b, m, f in zip(block, margin, full, strict=True))
    probe = _probe(task, params, source, shape, connected)
    channel_axis = probe.ndim == source.roi.dims + 1
    dtype = np.dtype(np.uint64) if instances else probe.dtype
    grid = BlockGrid(
        source.roi,
        tuple(b * v for b, v in zip(block, source.voxel_size, strict=True)),
        tuple(m * v for m, v in zip(margin, source.voxel_size, strict=True)),
    )
    merge_fraction = options.merge_fraction
    if merge_fraction is None:
        merge_fraction = 1e-9 if connected else 0.5
    return LabelsPlan(
        task,
        dict(params),
        source,
        grid,
        instances,
        connected,
        channel_axis,
        probe.shape[0] if channel_axis else 1,
        np.dtype(np.uint8) if dtype.kind == "b" else dtype,
        merge_fraction,
        route,
    )


def _block_shape(block_shape: tuple[int, ...] | None, source: Source) -> tuple[int, ...]:
    """The block in voxels: as given (multiples of the prediction's chunks), else >= 64."""
    if block_shape is None:
        return tuple(c * max(1, -(-MIN_BLOCK // c)) for c in source.chunks)
    if len(block_shape) != source.roi.dims or any(
        b % c for b, c in zip(block_shape, source.chunks, strict=True)
    ):
        raise ValueError(
            f"block_shape {list(block_shape)} must be {source.roi.dims} positive multiples of "
            f"the prediction's chunks {list(source.chunks)}"
        )
    return block_shape


def _context(
    context: tuple[int, ...] | None,
    task: Task,
    source: Source,
    block: tuple[int, ...],
    instances: bool,
    across_faces: bool,
) -> tuple[int, ...]:
    """Voxels read beyond each block per side: as given, else what the route needs.

    Connected components are exact without context (touching across a face is
    merging), and a region-graph route merges fragments across faces by their edges
    (`across_faces`): neither needs to see beyond its block. Other instance routes
    see the objects around the block's faces: at least a quarter block and four
    typical object radii (at most a block), so that seeds and distance transforms
    there are, as far as can be, a whole-volume pass's.
    """
    dims = source.roi.dims
    if context is not None:
        if len(context) != dims:
            raise ValueError(f"context {list(context)} must be {dims} voxel counts >= 0")
        return context
    if across_faces or not instances:
        return (0,) * dims
    radius = task.object_radius or 0.0
    return tuple(
        max(b // 4, min(b, math.ceil(4 * radius / v)))
        for b, v in zip(block, source.voxel_size, strict=True)
    )


def _probe(
    task: Task, params: Params, source: Source, shape: tuple[int, ...], connected: bool
) -> np.ndarray:
    """The task's post-processing of zeros of one block's read shape: its dtype and channels."""
    try:
        probe = task.post_process(np.zeros((source.channels, *shape), np.float32), params)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"post-processing parameters {dict(params)} do not fit {type(task).__name__} "
            f"with {source.channels} prediction channels: {err}"
        ) from None
    if connected and probe.dtype.kind not in "biu":
        raise ValueError(
            f"connected components need a binary output; {type(task).__name__} post-processing "
            f"gives {probe.dtype}"
        )
    return probe


def labels_dataset(
    instances: bool, pred_container: str | Path, pred_dataset: str, out_container: str | Path
) -> str:
    """Where labels go by default: a label image of the prediction in its own container.

    Example:
        >>> labels_dataset(True, "out.zarr", "prediction/s0", "out.zarr")
        'prediction/labels/labels'
        >>> labels_dataset(False, "out.zarr", "prediction", "other.zarr")
        'mask'

    """
    name = "labels" if instances else "mask"
    if Path(out_container).resolve() != Path(pred_container).resolve():
        return name
    image = re.sub(r"/s\d+$", "", pred_dataset.strip("/"))  # the group, not its level
    return f"{image}/labels/{name}"


def post_process_blockwise(
    task: Task,
    params: Params,
    pred_container: str | Path,
    pred_dataset: str,
    out_container: str | Path,
    out_dataset: str,
    options: LabelsOptions | None = None,
    *,
    execution: Execution | None = None,
    **fields: Any,
) -> LabelsResult:
    """Post-process a prediction blockwise into an OME-Zarr label image.

    Arguments as :func:`plan_labels`; `execution`: where the blocks run (default: in
    this process).

    Example:
        >>> from dacapo_hydra.tasks.distance import DistanceTask
        >>> post_process_blockwise(  # doctest: +SKIP
        ...     DistanceTask(3, (8.0, 8.0, 8.0)), {"threshold": 0.0},
        ...     "out.zarr", "prediction", "out.zarr", "prediction/labels/mask",
        ...     LabelsOptions(connected_components=True),
        ... ).objects
        12

    """
    started = time.perf_counter()
    source = Source.open(pred_container, pred_dataset)
    job = plan_labels(task, params, source, out_container, out_dataset, options, **fields)
    objects = job.run(execution)
    plan = job.plan
    return LabelsResult(
        job.out_container,
        job.out_dataset,
        plan.source.roi,
        plan.source.voxel_size,
        len(plan.grid),
        plan.instances,
        None if np.isnan(objects) else int(objects),
        time.perf_counter() - started,
    )
