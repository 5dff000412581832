"""Class-balancing weights, as DaCapo computes them: shared by the tasks with class targets."""

from __future__ import annotations

import numpy as np


class ClassBalancer:
    """Class-balancing weights as DaCapo computes them, with running class frequencies.

    Per channel, the class counts of every crop seen so far (by this object, so per
    DataLoader worker) give each class's frequency, clipped to [clip_min, clip_max];
    a voxel of class k weighs 1 / (num_classes * freq_k), times the mask. For two
    classes this is 1/(2 f) for foreground and 1/(2 (1 - f)) for background.

    Args:
        num_channels: channels balanced independently.
        num_classes: classes per channel (2 for binary targets).
        clip_min: lower clip of a class frequency.
        clip_max: upper clip.

    """

    def __init__(
        self,
        num_channels: int,
        num_classes: int = 2,
        clip_min: float = 0.05,
        clip_max: float = 0.95,
    ) -> None:
        if not 0 < clip_min <= clip_max < 1:
            raise ValueError(
                f"task: need 0 < clip_min <= clip_max < 1, got clip_min={clip_min}, "
                f"clip_max={clip_max}"
            )
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.num_classes = num_classes
        self.counts = np.zeros((num_channels, num_classes), np.float64)

    def __call__(self, classes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Weights (C, *spatial) float32 for class indices `classes` (C, *spatial).

        Args:
            classes: (C, *spatial) integers in [0, num_classes) (booleans for 2 classes).
            mask: (C, *spatial) or (*spatial); 1 where the target is known.

        """
        classes = classes.astype(np.int64)
        known = np.broadcast_to(mask, classes.shape).astype(bool)
        weights = np.zeros(classes.shape, np.float32)
        for c in range(classes.shape[0]):
            self.counts[c] += np.bincount(classes[c][known[c]], minlength=self.num_classes)
            total = self.counts[c].sum()
            if total == 0:
                continue
            freq = np.clip(self.counts[c] / total, self.clip_min, self.clip_max)
            per_class = (1.0 / (self.num_classes * freq)).astype(np.float32)
            weights[c] = per_class[classes[c]] * known[c]
        return weights
