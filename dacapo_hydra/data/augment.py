"""MONAI augmentation pipeline built from the trainer's `augment` config.

Spatial transforms apply identically to raw, gt and mask (the crops share a
centre, so flips and 90° rotations keep them aligned; labels are only permuted,
never interpolated). Intensity transforms touch raw alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import monai.transforms as mt

SPATIAL_KEYS = ("raw", "gt", "mask")


def build_augment(
    cfg: Any,
    dims: int,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    voxel_size: Sequence[float],
) -> mt.Compose:
    """A MONAI `Compose` over dict samples with keys raw, gt, mask (channels first).

    Transposes (random 90° rotations) are applied only in planes whose two axes
    have the same voxel size and crop shapes, so the crops stay aligned.
    """
    transforms: list[mt.Transform] = []
    if cfg.mirror_prob > 0:
        transforms += [
            mt.RandFlipd(SPATIAL_KEYS, prob=cfg.mirror_prob, spatial_axis=axis)
            for axis in range(dims)
        ]
    if cfg.transpose_prob > 0:
        for a, b in combinations(range(dims), 2):
            if (
                input_shape[a] == input_shape[b]
                and output_shape[a] == output_shape[b]
                and voxel_size[a] == voxel_size[b]
            ):
                transforms.append(
                    mt.RandRotate90d(SPATIAL_KEYS, prob=cfg.transpose_prob, spatial_axes=(a, b))
                )
    if cfg.intensity_prob > 0 and cfg.intensity_scale > 0:
        transforms.append(
            mt.RandScaleIntensityd("raw", factors=cfg.intensity_scale, prob=cfg.intensity_prob)
        )
    if cfg.intensity_prob > 0 and cfg.intensity_shift > 0:
        transforms.append(
            mt.RandShiftIntensityd("raw", offsets=cfg.intensity_shift, prob=cfg.intensity_prob)
        )
    return mt.Compose(transforms)
