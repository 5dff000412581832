"""`--dry-run` of dacapo-predict and dacapo-apply: the block plan, shapes, outputs, a time.

The job is planned as the command would plan it (every input checked, nothing
written); the estimate times one forward pass of the model on this machine and
multiplies by the passes the blocks need, shared among the workers.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dacapo_hydra.inference.predict import PredictJob


def forward_seconds(job: PredictJob) -> float:
    """Seconds of one forward pass of the job's model on one input window (after a warm-up)."""
    import torch

    model = job.model
    window = torch.zeros(1, model.architecture.in_channels, *job.plan.input_shape)
    window = window.to(next(model.parameters()).device)
    with torch.no_grad():
        model(window)  # warm-up: allocations, kernel choice
        start = time.perf_counter()
        model(window)
    return time.perf_counter() - start


def passes_per_block(job: PredictJob) -> int:
    """Forward passes one block needs: its write shape in output windows."""
    plan = job.plan
    return math.prod(
        math.ceil(w / o) for w, o in zip(plan.write_shape, plan.output_shape, strict=True)
    )


def describe_prediction(job: PredictJob, workers: int) -> list[str]:
    """What the prediction would do: output, shapes, blocks, estimated time."""
    plan = job.plan
    shape = (job.channels, *job.roi.voxel_shape(plan.voxel_size))
    blocks = len(job.grid)
    passes = blocks * passes_per_block(job)
    seconds = forward_seconds(job) * passes / max(1, workers)
    levels = f", then levels s1..s{job.levels - 1} (2x each)" if job.levels > 1 else ""
    return [
        f"output {job.out_container}/{job.out_dataset}/s0: shape {shape}, "
        f"{job.predictor.dtype}, voxel size {plan.voxel_size} nm, roi {job.roi}{levels}",
        f"blocks: {blocks} of {tuple(plan.write_shape)} voxels, read with context as "
        f"{tuple(plan.input_shape)}-voxel windows ({passes} forward passes)",
        f"estimated time: about {seconds:.0f} s on {max(1, workers)} worker(s) "
        f"(one forward pass here: {seconds * max(1, workers) / max(1, passes):.3g} s)",
    ]
