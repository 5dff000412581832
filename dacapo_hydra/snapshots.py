"""Snapshot images: central slices of raw, ground truth, target, prediction and weights.

Hand-written (a few lines of numpy): the panels are plain grey or label-coloured
slices laid side by side, no plotting library needed.
"""

from __future__ import annotations

import numpy as np

PAD = 2
MIN_HEIGHT = 128


def central_slice(volume: np.ndarray, dims: int) -> np.ndarray:
    """The central z slice of a (..., z, y, x) volume (2D volumes pass through)."""
    return volume[..., volume.shape[-3] // 2, :, :] if dims == 3 else volume


def grey(image: np.ndarray) -> np.ndarray:
    """Min-max scale a 2D array to uint8 RGB."""
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    scaled = np.zeros(image.shape) if hi <= lo else (image - lo) / (hi - lo)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=-1)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """A random but fixed colour per label id (0 is black), uint8 RGB."""
    ids = labels.astype(np.uint64)
    rgb = np.stack(
        [(ids * np.uint64(p)) % np.uint64(200) + np.uint64(55) for p in (2654435761, 40503, 69069)],
        -1,
    )
    rgb[ids == 0] = 0
    return rgb.astype(np.uint8)


def center_crop(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop the last axes of `image` to `shape` around the centre."""
    index = tuple(
        slice((s - t) // 2, (s - t) // 2 + t)
        for s, t in zip(image.shape[-len(shape) :], shape, strict=True)
    )
    return image[(Ellipsis, *index)]


def snapshot_image(
    raw: np.ndarray,
    gt: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    weight: np.ndarray,
    dims: int,
    max_channels: int = 3,
) -> np.ndarray:
    """One RGB image: raw | gt | target channels | prediction channels | weight channels.

    Args:
        raw: (C, *input) normalised raw; cropped to the output's centre.
        gt: (*output) labels.
        target: (C, *output) targets (class indices (*output) also accepted).
        prediction: (C, *output) activated prediction.
        weight: (C, *output) loss weights.
        dims: spatial dimensions.
        max_channels: channels shown per multi-channel panel.

    """
    out_shape = tuple(gt.shape[-dims:])
    panels = [
        grey(central_slice(center_crop(raw[0], out_shape), dims)),
        label_colors(central_slice(gt, dims)),
    ]
    for volume in (target, prediction, weight):
        volume = volume[None] if volume.ndim == dims else volume
        for c in range(min(max_channels, volume.shape[0])):
            panels.append(grey(central_slice(volume[c], dims)))
    height = max(p.shape[0] for p in panels)
    padded = [
        np.pad(p, ((0, height - p.shape[0]), (PAD, PAD), (0, 0)), constant_values=255)
        for p in panels
    ]
    image = np.concatenate(padded, axis=1)
    # Small crops are enlarged (nearest) so they are readable in the MLflow UI.
    factor = max(1, MIN_HEIGHT // height)
    return image.repeat(factor, axis=0).repeat(factor, axis=1)
