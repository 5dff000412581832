"""Snapshot images: central slices of raw, ground truth, target, prediction and weights.

A grid, one captioned panel per slice: the first row holds raw and ground truth, then
one row per channel with its target, prediction and weight side by side. A channel's
target and prediction share one intensity scale (their joint range), so a prediction
that falls short of its target looks darker rather than being stretched to full
contrast; the weights share one scale from 0. Small crops are enlarged (nearest
neighbour) to at least `MIN_PANEL` pixels.

The layout is hand-written numpy (no plotting library); Pillow draws the captions.
:class:`Snapshots`, a callback of every run, logs one such image to MLflow every
`snapshot_interval` iterations, as the artifact `snapshots/iteration_<000010>.png`
(:func:`snapshot_name`): a name that says which iteration it shows and sorts in
order, where MLflow's `log_image` would name it `snapshot+step+10+timestamp+...`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

PAD = 4
CAPTION = 18
MIN_PANEL = 192
MIN_WIDTH = 224  # room for a caption such as 'prediction 0 [-0.998, 0.999]'
WHITE = 255
FRAME = 160


def central_slice(volume: np.ndarray, dims: int) -> np.ndarray:
    """The central z slice of a (..., z, y, x) volume (2D volumes pass through)."""
    return volume[..., volume.shape[-3] // 2, :, :] if dims == 3 else volume


def grey(image: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale a 2D array from [lo, hi] (default: its own range) to uint8 RGB.

    Example:
        >>> grey(np.array([[0.0, 0.5], [1.0, 2.0]]), 0.0, 1.0)[..., 0].tolist()
        [[0, 127], [255, 255]]

    """
    lo = float(np.nanmin(image)) if lo is None else lo
    hi = float(np.nanmax(image)) if hi is None else hi
    scaled = np.zeros(image.shape) if hi <= lo else np.clip((image - lo) / (hi - lo), 0, 1)
    return np.repeat((np.nan_to_num(scaled) * 255).astype(np.uint8)[..., None], 3, axis=-1)


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


def _range(*arrays: np.ndarray) -> tuple[float, float]:
    return float(min(np.nanmin(a) for a in arrays)), float(max(np.nanmax(a) for a in arrays))


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _captioned(panel: np.ndarray, caption: str, size: tuple[int, int]) -> np.ndarray:
    """The panel enlarged to fill `size` (nearest), on white, with its caption above."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = size
    factor = max(1, min(height // panel.shape[0], width // panel.shape[1]))
    big = panel.repeat(factor, axis=0).repeat(factor, axis=1)
    cell = np.full((CAPTION + height + PAD, width + 2 * PAD, 3), WHITE, np.uint8)
    # A grey frame, so a white panel (weights of 1) stands out from the background.
    cell[CAPTION - 1 : CAPTION + big.shape[0] + 1, PAD - 1 : PAD + big.shape[1] + 1] = FRAME
    cell[CAPTION : CAPTION + big.shape[0], PAD : PAD + big.shape[1]] = big
    image = Image.fromarray(cell)
    ImageDraw.Draw(image).text((PAD, 2), caption, fill=(0, 0, 0), font=ImageFont.load_default(13))
    return np.asarray(image)


def snapshot_image(
    raw: np.ndarray,
    gt: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    weight: np.ndarray,
    dims: int,
    max_channels: int = 3,
) -> np.ndarray:
    """One captioned RGB grid: raw, gt; then per channel: target, prediction, weight.

    Args:
        raw: (C, *input) normalised raw; cropped to the output's centre.
        gt: (*output) labels.
        target: (C, *output) targets (class indices (*output) also accepted).
        prediction: (C, *output) activated prediction.
        weight: (C, *output) loss weights.
        dims: spatial dimensions.
        max_channels: channel rows shown.

    Returns:
        A uint8 (height, width, 3) image; each panel at least `MIN_PANEL` pixels high
        and captioned with its name and intensity range.

    Example:
        >>> labels = np.zeros((8, 8), np.uint8)
        >>> ones = np.ones((1, 8, 8), np.float32)
        >>> snapshot_image(ones, labels, ones, ones, ones, dims=2).shape  # 2 rows of 3 panels
        (428, 696, 3)

    """
    out_shape = tuple(gt.shape[-dims:])
    raw_slice = central_slice(center_crop(raw[0], out_shape), dims)
    rows: list[list[tuple[np.ndarray, str]]] = [
        [
            (grey(raw_slice), f"raw [{_fmt(np.nanmin(raw_slice))}, {_fmt(np.nanmax(raw_slice))}]"),
            (label_colors(central_slice(gt, dims)), f"ground truth ({len(np.unique(gt))} ids)"),
        ]
    ]
    target = target[None] if target.ndim == dims else target
    prediction = prediction[None] if prediction.ndim == dims else prediction
    weight = weight[None] if weight.ndim == dims else weight
    w_lo, w_hi = 0.0, max(float(np.nanmax(weight)), 1e-12)
    for c in range(min(max_channels, max(target.shape[0], prediction.shape[0]))):
        t = central_slice(target[min(c, target.shape[0] - 1)], dims)
        p = central_slice(prediction[c], dims)
        w = central_slice(weight[min(c, weight.shape[0] - 1)], dims)
        lo, hi = _range(t, p)
        shared = f"[{_fmt(lo)}, {_fmt(hi)}]"
        rows.append(
            [
                (grey(t, lo, hi), f"target {c} {shared}"),
                (grey(p, lo, hi), f"prediction {c} {shared}"),
                (grey(w, w_lo, w_hi), f"weight {c} [0, {_fmt(w_hi)}]"),
            ]
        )
    return _grid(rows, out_shape[-2:])


def _grid(rows: list[list[tuple[np.ndarray, str]]], panel_shape: tuple[int, ...]) -> np.ndarray:
    """The captioned panels in rows, each scaled to at least `MIN_PANEL` pixels high."""
    panel_h, panel_w = panel_shape
    factor = max(1, -(-MIN_PANEL // panel_h))
    size = (panel_h * factor, max(panel_w * factor, MIN_WIDTH))
    columns = max(len(row) for row in rows)
    blank = np.full(_captioned(rows[0][0][0], "", size).shape, WHITE, np.uint8)
    grid = [
        np.concatenate(
            [_captioned(panel, caption, size) for panel, caption in row]
            + [blank] * (columns - len(row)),
            axis=1,
        )
        for row in rows
    ]
    return np.concatenate(grid, axis=0)


SNAPSHOT_DIR = "snapshots"


def snapshot_name(step: int) -> str:
    """The artifact file of the snapshot at iteration `step` (zero-padded, so it sorts).

    Example:
        >>> snapshot_name(10)
        'iteration_000010.png'

    """
    return f"iteration_{step:06d}.png"


class Snapshots(pl.Callback):
    """Every `interval` iterations, log a PNG of one training sample to MLflow.

    The image holds central slices of raw, ground truth, target, prediction and
    weights; it is the run's artifact `snapshots/iteration_<step>.png`.
    """

    def __init__(self, client: Any, run_id: str, interval: int, dims: int) -> None:
        self.client = client
        self.run_id = run_id
        self.interval = interval
        self.dims = dims
        self.logged_step = -1

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Log a snapshot at multiples of `interval`."""
        step = trainer.global_step
        # With gradient accumulation several batches end at one iteration: log the first.
        if self.interval <= 0 or step % self.interval or step == self.logged_step:
            return
        if not trainer.is_global_zero:  # MLflow is rank 0's
            return
        self.logged_step = step
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            prediction = pl_module.predict(batch["raw"][:1])[0]
        pl_module.train(was_training)
        image = snapshot_image(
            batch["raw"][0].float().cpu().numpy(),
            batch["gt"][0].cpu().numpy(),
            batch["target"][0].float().cpu().numpy(),
            prediction.float().cpu().numpy(),
            batch["weight"][0].float().cpu().numpy(),
            self.dims,
        )
        from PIL import Image

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / snapshot_name(step)
            Image.fromarray(image).save(path)
            self.client.log_artifact(self.run_id, str(path), SNAPSHOT_DIR)
