"""The plan: every value a run leaves out, each with the reason it was chosen.

:func:`make_plan` reads a :class:`~dacapo_hydra.data.fingerprint.Fingerprint` and a
memory :class:`~dacapo_hydra.planning.budget.Budget` and fills in the network's
topology and shapes, the batch, the augmentations and the stopping settings. A
value's key is the config key it sets, as a Hydra override writes it (`iterations`,
`trainer.batch_size`; a group choice is the group's name: `architecture`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dacapo_hydra.data.fingerprint import Fingerprint
from dacapo_hydra.planning.augmentations import plan_augmentations
from dacapo_hydra.planning.budget import Budget, Crop, fmaps_per_level, plan_crop
from dacapo_hydra.planning.stopping import plan_stopping
from dacapo_hydra.planning.topology import Topology, plan_topology

# Group choices a plan may make; the rest of its keys are values.
GROUPS = ("architecture", "callbacks")
FAMILIES = ("cnnectome_unet", "monai_unet")
# Feature maps at the top level, and the factor per level down, on a GPU and on a CPU.
FMAPS = {"gpu": (32, 2), "cpu": (12, 2)}


@dataclass(frozen=True)
class PlanValue:
    """One planned setting: the key it sets, its value and why."""

    key: str
    value: Any
    reason: str


@dataclass
class Plan:
    """The planned settings, in the order they were decided, and what they came from."""

    values: list[PlanValue] = field(default_factory=list)
    fingerprint: Fingerprint | None = None
    device: str = "cpu"

    def add(self, key: str, value: Any, reason: str) -> None:
        """Plan `key` = `value`, for `reason`."""
        self.values.append(PlanValue(key, value, reason))

    def as_dict(self) -> dict[str, Any]:
        """Key -> value."""
        return {v.key: v.value for v in self.values}

    def get(self, key: str) -> Any:
        """The planned value of `key` (KeyError if none)."""
        return self.as_dict()[key]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: the device, the fingerprint and every value with its reason."""
        return {
            "device": self.device,
            "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None,
            "values": [{"key": v.key, "value": v.value, "reason": v.reason} for v in self.values],
        }


def _plan_network(
    plan: Plan, architecture: str, topology: Topology, padding: str, fmaps: tuple[int, int]
) -> None:
    """Add the network family's topology, padding and feature maps to `plan`."""
    num_fmaps, inc = fmaps
    factors = "; ".join("x".join(str(f) for f in level) for level in topology.downsample_factors)
    plan.add("architecture", architecture, "the planned U-Net family (plan.architecture)")
    if architecture == "cnnectome_unet":
        for key, value in topology.cnnectome().items():
            why = (
                f"{topology.levels} levels ({factors}): {topology.reason}"
                if key == "downsample_factors"
                else "kernel 1 on an axis while it is coarse, 3 elsewhere"
            )
            plan.add(f"architecture.{key}", value, why)
        plan.add(
            "architecture.padding",
            padding,
            "GPU: valid (translation equivariant)"
            if padding == "valid"
            else "CPU: same (a step's cost is its voxels; valid would spend them on context)",
        )
        plan.add("architecture.num_fmaps", num_fmaps, f"{plan.device}: top-level feature maps")
        plan.add("architecture.fmap_inc_factor", inc, "feature maps double per level down")
    else:
        for key, value in topology.monai(num_fmaps).items():
            plan.add(
                f"architecture.network.{key}",
                value,
                f"{topology.levels} levels ({factors}): {topology.reason}",
            )
        plan.add("architecture.divisor", list(topology.total_factor), "the total stride per axis")
        plan.add("architecture.fmaps_out", num_fmaps, "the top level's channels")


def _plan_stopping(plan: Plan, fingerprint: Fingerprint, crop: Crop) -> None:
    """Add validation, iterations and early stopping, sized to the labelled data, to `plan`."""
    stopping = plan_stopping(fingerprint.labelled_voxels, crop.output_shape, crop.batch_size)
    plan.add(
        "validation_interval", stopping.validation_interval, stopping.reasons["validation_interval"]
    )
    plan.add(
        "validation_samples", stopping.validation_samples, stopping.reasons["validation_samples"]
    )
    plan.add("iterations", stopping.iterations, stopping.reasons["iterations"])
    plan.add("callbacks", "early_stopping", "train until the validation criterion stops improving")
    plan.add("callbacks.early_stopping.patience", stopping.patience, stopping.reasons["patience"])


def make_plan(
    fingerprint: Fingerprint, budget: Budget, architecture: str = "cnnectome_unet"
) -> Plan:
    """The plan for data of `fingerprint` on a device of `budget`.

    Args:
        fingerprint: the training data's fingerprint.
        budget: the memory a training step may use.
        architecture: the network family to plan: `cnnectome_unet` (valid
            convolutions) or `monai_unet` (MONAI's UNet, 'same' padding).

    Raises:
        ValueError: an unknown `architecture`, naming `plan.architecture`.

    """
    if architecture not in FAMILIES:
        raise ValueError(f"plan.architecture: expected one of {FAMILIES}, got {architecture!r}")
    plan = Plan(fingerprint=fingerprint, device=budget.device)
    topology = plan_topology(fingerprint.voxel_size, fingerprint.radius.p50)
    num_fmaps, inc = FMAPS[budget.device]
    fmaps = fmaps_per_level(num_fmaps, inc, topology.levels)
    # Valid padding (DaCapo's: translation equivariant) spends most of a small crop on
    # context; on a CPU, where a step's cost is its voxels, every voxel computed is output.
    padding = "valid" if budget.device == "gpu" or architecture != "cnnectome_unet" else "same"
    crop = plan_crop(
        topology,
        fmaps,
        budget,
        fingerprint.labelled_extent_voxels,
        padding if architecture == "cnnectome_unet" else "same",
    )
    _plan_network(plan, architecture, topology, padding, (num_fmaps, inc))
    plan.add("architecture.input_shape", list(crop.input_shape), crop.reason)
    plan.add(
        "architecture.eval_input_shape",
        list(crop.eval_input_shape),
        "twice the training input, at most the labelled extent: fewer prediction blocks",
    )
    plan.add("trainer.batch_size", crop.batch_size, crop.reason.split("; ")[-1])
    for key, (value, why) in plan_augmentations(fingerprint).items():
        plan.add(key, value, why)
    _plan_stopping(plan, fingerprint, crop)
    return plan
