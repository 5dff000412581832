"""EM section defects as MONAI dictionary transforms (raw only, 3D, along z)."""

from dacapo_hydra.data.augmentations.misalignment import RandMisalignmentd
from dacapo_hydra.data.augmentations.missing_section import RandMissingSectiond

__all__ = ["RandMisalignmentd", "RandMissingSectiond"]
