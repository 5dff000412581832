"""Augmentations the data's anisotropy allows, with lengths in the data's units (nm).

Rotations mix axes: one that turns a coarse axis into a fine one shows the network
voxels it will never see, so anisotropic data rotates in the fine plane only
(`planes: yx`); transposes are limited to equal-voxel planes by
:mod:`dacapo_hydra.data.augment` already. The elastic grid follows the objects:
control points about an object diameter apart, jittered by a tenth of that, and no
closer than two voxels on a coarse axis.
"""

from __future__ import annotations

from dacapo_hydra.data.fingerprint import Fingerprint

JITTER = 0.1  # of the control-point spacing


def plan_augmentations(fingerprint: Fingerprint) -> dict[str, tuple[object, str]]:
    """`trainer.augment.*` keys: (value, reason) each.

    Example:
        >>> from dacapo_hydra.data.fingerprint import Fingerprint, Spread
        >>> fp = Fingerprint(3, (40.0, 4.0, 4.0), (10.0, 1.0, 1.0), (4000.0,) * 3,
        ...     (100, 1000, 1000), 10**8, 10, Spread(50, 100, 150), (Spread(),) * 3, 0.3)
        >>> plan_augmentations(fp)["trainer.augment.rotation.planes"][0]
        'yx'

    """
    coarse = fingerprint.coarse_axes
    planned: dict[str, tuple[object, str]] = {}
    if fingerprint.dims == 2:
        planned["trainer.augment.rotation.planes"] = ("yx", "2D: the only plane")
    elif coarse:
        planned["trainer.augment.rotation.planes"] = (
            "yx",
            f"anisotropic ({'x'.join(f'{v:g}' for v in fingerprint.voxel_size)} nm): "
            "no rotation mixes the coarse axis with the fine ones",
        )
    else:
        planned["trainer.augment.rotation.planes"] = ("all", "isotropic: any rotation")
    radius = fingerprint.radius.p50
    if radius is None:
        return planned
    spacing = [
        float(round(max(2 * radius, (2 if a in coarse else 4) * v)))
        for a, v in enumerate(fingerprint.voxel_size)
    ]
    planned["trainer.augment.elastic.control_point_spacing"] = (
        spacing,
        f"nm per axis: an object diameter ({2 * radius:.0f} nm), at least 4 voxels "
        "(2 on a coarse axis)",
    )
    planned["trainer.augment.elastic.jitter_sigma"] = (
        [round(JITTER * s, 1) for s in spacing],
        f"nm per axis: {JITTER:g} of the control-point spacing",
    )
    return planned
