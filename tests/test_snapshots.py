"""Snapshot images: captioned panels, target and prediction on one scale, readable names."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from dacapo_hydra.training.snapshots import CAPTION, MIN_PANEL, PAD, Snapshots, snapshot_image


def _panel(image: np.ndarray, row: int, column: int, size: int) -> np.ndarray:
    """The pixels of panel (row, column) of a grid of square `size` panels."""
    cell_h, cell_w = CAPTION + size + PAD, max(size, 224) + 2 * PAD
    top, left = row * cell_h + CAPTION, column * cell_w + PAD
    return image[top : top + size, left : left + size, 0]


def test_small_crops_are_enlarged_into_a_captioned_grid() -> None:
    gt = np.zeros((12, 12), np.uint16)
    gt[2:6, 2:6] = 1
    one = np.zeros((1, 12, 12), np.float32)
    image = snapshot_image(np.zeros((1, 20, 20)), gt, one, one, one, dims=2)
    size = 12 * -(-MIN_PANEL // 12)  # 192: 16 times 12 voxels
    assert image.shape == (2 * (CAPTION + size + PAD), 3 * (224 + 2 * PAD), 3)
    # Captions are drawn: dark pixels in the band above each panel.
    assert (image[:CAPTION, : 224 + 2 * PAD] < 128).any()
    # The gt panel is the label's colour on the labelled voxels, black elsewhere.
    labels = _panel(image, 0, 1, size)
    assert (labels[: 2 * 16] == 0).all() and (labels[2 * 16 : 6 * 16, 2 * 16 : 6 * 16] > 0).all()


def test_target_and_prediction_share_one_scale() -> None:
    gt = np.zeros((4, 10, 10), np.uint8)
    target = np.zeros((1, 4, 10, 10), np.float32)
    target[..., 5:] = 1.0
    prediction = target * 0.5  # half way: must look half as bright, not stretched
    weight = np.ones_like(target)
    image = snapshot_image(np.zeros((1, 4, 10, 10)), gt, target, prediction, weight, dims=3)
    size = 10 * -(-MIN_PANEL // 10)
    shown_target = _panel(image, 1, 0, size)
    shown_prediction = _panel(image, 1, 1, size)
    assert shown_target.max() == 255 and shown_prediction.max() == 127
    assert shown_prediction.min() == shown_target.min() == 0
    # Weights of one are shown white on the scale [0, 1].
    assert (_panel(image, 1, 2, size) == 255).all()


class _Client:
    """Records what `log_artifact` was given (and the file, before it is removed)."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, str, bytes]] = []

    def log_artifact(self, run_id: str, path: str, artifact_path: str) -> None:
        self.logged.append((Path(path).name, artifact_path, Path(path).read_bytes()[:8]))


class _Module(torch.nn.Module):
    def predict(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:, :, 2:-2, 2:-2]


def test_snapshots_are_logged_under_readable_names() -> None:
    client = _Client()
    callback = Snapshots(client, "run", interval=5, dims=2)
    batch = {
        "raw": torch.zeros(1, 1, 12, 12),
        "gt": torch.ones(1, 8, 8, dtype=torch.int64),
        "target": torch.zeros(1, 1, 8, 8),
        "weight": torch.ones(1, 1, 8, 8),
    }
    for step in (5, 5, 7, 10):  # accumulation: two batches end at iteration 5
        trainer = SimpleNamespace(global_step=step, is_global_zero=True)
        callback.on_train_batch_end(trainer, _Module(), None, batch, 0)  # type: ignore[arg-type]
    png = b"\x89PNG\r\n\x1a\n"
    assert client.logged == [
        ("iteration_000005.png", "snapshots", png),
        ("iteration_000010.png", "snapshots", png),
    ]
