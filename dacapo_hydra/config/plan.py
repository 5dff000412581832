"""Schema of the `plan` group: whether a run fills the settings it leaves out from its data.

`plan=auto` (the default) plans a run whose datasplit is not a demo
(:mod:`dacapo_hydra.planning`); `plan=none` keeps the configs' own values.
`record` is filled in by the planner: the values it chose and the keys the command
line overrode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PlanConfig:
    """How a run is planned.

    Attributes:
        mode: `auto` (plan a datasplit that is not a demo) or `none`.
        architecture: the U-Net family planned: `cnnectome_unet` or `monai_unet`.
        gpu_memory_gib: plan for a GPU of this memory (null: this machine's GPU, or
            its CPU; 0: a CPU), e.g. on a login node for a GPU cluster.
        record: written by the planner.

    """

    mode: str = "auto"
    architecture: str = "cnnectome_unet"
    gpu_memory_gib: float | None = None
    record: Any = None


SCHEMAS = {"plan": PlanConfig}
