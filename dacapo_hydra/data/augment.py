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

from dacapo_hydra.config.units import lengths_to_nm, lengths_to_nm_within, to_nm
from dacapo_hydra.data.augmentations import RandMisalignmentd, RandMissingSectiond
from dacapo_hydra.data.deform import Deformation
from dacapo_hydra.data.interpolation import INTERPOLATIONS

SPATIAL_KEYS = ("raw", "gt", "mask")
KEY = "trainer.augment"  # where the augment node sits in a run config, for messages


def _get(cfg: Any, name: str) -> Any:
    """A sub-config of `augment`, or None where an older config has none."""
    return getattr(cfg, name, None) if not isinstance(cfg, dict) else cfg.get(name)


def crop_extent(shape: Sequence[int], voxel_size: Sequence[float]) -> tuple[float, ...]:
    """World extent (nm) of a crop of `shape` voxels."""
    return tuple(float(n) * float(v) for n, v in zip(shape, voxel_size, strict=True))


def _elastic_parameters(
    elastic: Any, voxel_size: Sequence[float], input_shape: Sequence[int], key: str
) -> tuple[float | list[float], float | list[float], str]:
    """Control-point spacing and jitter (nm) and the interpolation of an active elastic node."""
    interpolation = str(_get(elastic, "interpolation") or "linear")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"{key}.elastic.interpolation: expected one of {list(INTERPOLATIONS)}, "
            f"got {interpolation!r}"
        )
    spacing = lengths_to_nm_within(
        elastic.control_point_spacing,
        voxel_size,
        f"{key}.elastic.control_point_spacing",
        crop_extent(input_shape, voxel_size),
        min_voxels=1,
    )
    jitter = lengths_to_nm(
        elastic.jitter_sigma, voxel_size, f"{key}.elastic.jitter_sigma", min_voxels=0
    )
    return spacing, jitter, interpolation


def build_deformation(
    cfg: Any,
    dims: int,
    voxel_size: Sequence[float],
    input_shape: Sequence[int],
    key: str = KEY,
) -> Deformation | None:
    """The elastic/rotation warp the sampler applies, or None if both are off.

    Control-point spacing and jitter are lengths (see :mod:`dacapo_hydra.config.units`)
    turned into nm here, where the raw voxel size is known. The warp acts in world
    units: one spacing or jitter is the same number of nm along every axis (a
    scalar `"12.5vx"` at 1000 x 250 x 250 nm is 3125 nm in z, y and x alike), as a
    physical deformation would be; a list gives one length per axis, each in its
    own axis' voxels.

    Args:
        cfg: the trainer's `augment` node.
        dims: spatial dimensions.
        voxel_size: raw voxel size (nm).
        input_shape: raw crop shape (voxels); the spacing must fit inside the crop.
        key: the config key of `cfg`, for messages.

    Raises:
        ValueError: naming the key, for a spacing below one voxel or beyond the
            crop, a negative jitter, or an interpolation other than `linear` or `cubic`.

    """
    elastic, rotation = _get(cfg, "elastic"), _get(cfg, "rotation")
    elastic_prob = float(elastic.prob) if elastic is not None else 0.0
    rotation_prob = float(rotation.prob) if rotation is not None else 0.0
    if elastic_prob <= 0 and rotation_prob <= 0:
        return None
    spacing: float | list[float] = 1.0  # no elastic displacement: the grid is never used
    jitter: float | list[float] = 0.0
    interpolation = "linear"
    if elastic is not None and elastic_prob > 0:
        spacing, jitter, interpolation = _elastic_parameters(elastic, voxel_size, input_shape, key)
    deformation = Deformation(
        dims,
        control_point_spacing=spacing,
        jitter_sigma=jitter,
        rotation_max=float(rotation.max_degrees) if rotation else 0.0,
        rotation_planes=str(rotation.planes) if rotation else "yx",
        elastic_prob=elastic_prob,
        rotation_prob=rotation_prob,
        interpolation=interpolation,
    )
    return deformation if deformation.active else None


def _per_axis(nm: float | list[float], dims: int) -> list[float]:
    return [nm] * dims if isinstance(nm, float) else nm


def _blur_sigmas(
    blur: Any, voxel_size: Sequence[float], key: str
) -> dict[str, tuple[float, float]]:
    """MONAI's per-axis sigma ranges (voxels) from the blur lengths (nm or voxels)."""
    dims = len(voxel_size)
    low = _per_axis(
        lengths_to_nm(blur.sigma_min, voxel_size, f"{key}.sigma_min", min_voxels=0), dims
    )
    high = _per_axis(
        lengths_to_nm(blur.sigma_max, voxel_size, f"{key}.sigma_max", min_voxels=0), dims
    )
    if any(lo > hi for lo, hi in zip(low, high, strict=True)):
        raise ValueError(
            f"{key}: sigma_min {blur.sigma_min!r} is more than sigma_max {blur.sigma_max!r}"
        )
    # MONAI names the spatial axes x, y, z in array order (ours: z, y, x).
    return {
        f"sigma_{name}": (lo / v, hi / v)
        for name, lo, hi, v in zip("xyz", low, high, voxel_size, strict=False)
    }


def _spatial_transforms(
    cfg: Any,
    dims: int,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    voxel_size: Sequence[float],
    output_voxel_size: Sequence[float] | None,
) -> list[mt.Transform]:
    """Mirrors along every axis, and 90° rotations in planes where the crops stay aligned."""
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
    return transforms


def _intensity_transforms(cfg: Any) -> list[mt.Transform]:
    """Intensity scale, shift and gamma on raw."""
    transforms: list[mt.Transform] = []
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
    return transforms


def _section_transforms(
    cfg: Any, dims: int, input_shape: Sequence[int], voxel_size: Sequence[float], key: str
) -> list[mt.Transform]:
    """Section defects on 3D raw: missing sections and misaligned ones."""
    transforms: list[mt.Transform] = []
    if dims != 3:
        return transforms
    missing = _get(cfg, "missing_section")
    if missing is not None and missing.prob > 0:
        transforms.append(RandMissingSectiond("raw", prob=missing.prob, value=missing.value))
    slip = _get(cfg, "misalignment")
    if slip is not None and slip.prob > 0:
        plane = voxel_size[-2:]  # shifts are in y, x
        max_nm = to_nm(
            slip.max_shift,
            plane,
            f"{key}.misalignment.max_shift",
            min_voxels=1,
            max_nm=min(crop_extent(input_shape[-2:], plane)),
        )
        shift = int(round(max_nm / min(plane)))
        transforms.append(RandMisalignmentd("raw", prob=slip.prob, max_shift=shift, mode=slip.mode))
    return transforms


def build_augment(
    cfg: Any,
    dims: int,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    voxel_size: Sequence[float],
    output_voxel_size: Sequence[float] | None = None,
    key: str = KEY,
) -> mt.Compose:
    """A MONAI `Compose` over dict samples with keys raw, gt, mask (channels first).

    Transposes (random 90° rotations) are applied only in planes whose two axes
    have the same voxel sizes and crop shapes, so the crops stay aligned. Blur
    sigmas and the misalignment shift are lengths (nm, or e.g. `"4vx"`; see
    :mod:`dacapo_hydra.config.units`), turned into voxels here; a blur sigma per
    axis is allowed, one sigma is the same number of nm along every axis.

    Args:
        cfg: the trainer's `augment` node.
        dims: spatial dimensions.
        input_shape: raw crop shape (voxels).
        output_shape: gt crop shape (voxels).
        voxel_size: raw voxel size (nm): converts blur sigma and shifts to voxels.
        output_voxel_size: gt voxel size (nm), the raw's by default.
        key: the config key of `cfg`, for messages.

    Raises:
        ValueError: naming the key, for a negative blur sigma, sigma_min above
            sigma_max, or a misalignment shift under one voxel or beyond the crop.

    """
    transforms = _spatial_transforms(
        cfg, dims, input_shape, output_shape, voxel_size, output_voxel_size
    )
    transforms += _intensity_transforms(cfg)
    transforms += _section_transforms(cfg, dims, input_shape, voxel_size, key)
    blur = _get(cfg, "blur")
    if blur is not None and blur.prob > 0:
        sigmas = _blur_sigmas(blur, voxel_size, f"{key}.blur")
        transforms.append(mt.RandGaussianSmoothd("raw", prob=blur.prob, **sigmas))
    noise = _get(cfg, "noise")
    if noise is not None and noise.prob > 0:
        transforms.append(mt.RandGaussianNoised("raw", prob=noise.prob, std=noise.std))
    return mt.Compose(transforms)
