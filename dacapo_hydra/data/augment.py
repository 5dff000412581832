"""Augmentations built from the trainer's `augment` config.

The elastic warp and rotation are applied by the sampler while it reads (see
:mod:`dacapo_hydra.data.deform`): they need the region around the crop. The
rest is a MONAI pipeline over dict samples (raw, gt, mask; channels first).
Spatial transforms apply identically to raw, gt and mask (the crops share a
centre, so flips and 90° rotations keep them aligned; labels are only permuted,
never interpolated). Intensity transforms and section defects touch raw alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import monai.transforms as mt

from dacapo_hydra.data.augmentations import RandMisalignmentd, RandMissingSectiond
from dacapo_hydra.data.deform import Deformation

SPATIAL_KEYS = ("raw", "gt", "mask")


def _get(cfg: Any, name: str) -> Any:
    """A sub-config of `augment`, or None where an older config has none."""
    return getattr(cfg, name, None) if not isinstance(cfg, dict) else cfg.get(name)


def build_deformation(cfg: Any, dims: int) -> Deformation | None:
    """The elastic/rotation warp the sampler applies, or None if both are off."""
    elastic, rotation = _get(cfg, "elastic"), _get(cfg, "rotation")
    elastic_prob = float(elastic.prob) if elastic is not None else 0.0
    rotation_prob = float(rotation.prob) if rotation is not None else 0.0
    if elastic_prob <= 0 and rotation_prob <= 0:
        return None
    deformation = Deformation(
        dims,
        control_point_spacing=_list(elastic.control_point_spacing) if elastic else 100.0,
        jitter_sigma=_list(elastic.jitter_sigma) if elastic else 0.0,
        rotation_max=float(rotation.max_degrees) if rotation else 0.0,
        rotation_planes=str(rotation.planes) if rotation else "yx",
        elastic_prob=elastic_prob,
        rotation_prob=rotation_prob,
    )
    return deformation if deformation.active else None


def _list(value: Any) -> float | list[float]:
    return float(value) if isinstance(value, int | float) else [float(v) for v in value]


def build_augment(
    cfg: Any,
    dims: int,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    voxel_size: Sequence[float],
    output_voxel_size: Sequence[float] | None = None,
) -> mt.Compose:
    """A MONAI `Compose` over dict samples with keys raw, gt, mask (channels first).

    Transposes (random 90° rotations) are applied only in planes whose two axes
    have the same voxel sizes and crop shapes, so the crops stay aligned.

    Args:
        cfg: the trainer's `augment` node.
        dims: spatial dimensions.
        input_shape: raw crop shape (voxels).
        output_shape: gt crop shape (voxels).
        voxel_size: raw voxel size (nm): converts blur sigma and shifts to voxels.
        output_voxel_size: gt voxel size (nm), the raw's by default.

    """
    out_vs = tuple(output_voxel_size or voxel_size)
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
                and out_vs[a] == out_vs[b]
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
    gamma = _get(cfg, "gamma")
    if gamma is not None and gamma.prob > 0:
        transforms.append(
            mt.RandAdjustContrastd("raw", prob=gamma.prob, gamma=(gamma.min, gamma.max))
        )
    missing = _get(cfg, "missing_section")
    if missing is not None and missing.prob > 0 and dims == 3:
        transforms.append(RandMissingSectiond("raw", prob=missing.prob, value=missing.value))
    slip = _get(cfg, "misalignment")
    if slip is not None and slip.prob > 0 and dims == 3:
        shift = int(round(slip.max_shift / min(voxel_size[1:])))
        transforms.append(RandMisalignmentd("raw", prob=slip.prob, max_shift=shift, mode=slip.mode))
    blur = _get(cfg, "blur")
    if blur is not None and blur.prob > 0:
        sigmas = {
            f"sigma_{name}": (blur.sigma_min / v, blur.sigma_max / v)
            for name, v in zip("xyz", voxel_size, strict=False)
        }
        transforms.append(mt.RandGaussianSmoothd("raw", prob=blur.prob, **sigmas))
    noise = _get(cfg, "noise")
    if noise is not None and noise.prob > 0:
        transforms.append(mt.RandGaussianNoised("raw", prob=noise.prob, std=noise.std))
    return mt.Compose(transforms)
