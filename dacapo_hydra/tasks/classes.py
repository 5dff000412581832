"""Which ground-truth labels make up each named class of a task."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ClassMap:
    """Named foreground classes and the ground-truth label values each is made of.

    Args:
        names: one name per class (per output channel of distance tasks).
        class_ids: per class, the label values that belong to it. None: class i is
            label i + 1, except that a single class is every non-zero label (so
            instance ground truth gives one foreground class).

    """

    def __init__(self, names: Sequence[str], class_ids: Sequence[Sequence[int]] | None) -> None:
        self.names = [str(n) for n in names]
        if not self.names:
            raise ValueError("task.channels: need at least one class name")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"task.channels: names must be unique, got {self.names}")
        if class_ids is not None:
            if len(class_ids) != len(self.names):
                raise ValueError(
                    f"task.class_ids: {len(class_ids)} entries for {len(self.names)} classes "
                    f"{self.names}; need one list of label ids per class"
                )
            ids = [[int(i) for i in group] for group in class_ids]
            flat = [i for group in ids for i in group]
            if any(i <= 0 for i in flat) or len(set(flat)) != len(flat):
                raise ValueError(
                    f"task.class_ids: {ids} must be positive label ids, each in one class only"
                )
            self.class_ids: list[list[int]] | None = ids
        else:
            self.class_ids = None

    def __len__(self) -> int:
        return len(self.names)

    def masks(self, gt: np.ndarray) -> np.ndarray:
        """(classes, *spatial) booleans: where each class is."""
        if self.class_ids is not None:
            return np.stack([np.isin(gt, ids) for ids in self.class_ids])
        if len(self.names) == 1:
            return (gt != 0)[None]
        return np.stack([gt == i + 1 for i in range(len(self.names))])

    def indices(self, gt: np.ndarray) -> np.ndarray:
        """(*spatial) int64: 0 for background, i + 1 where class i is."""
        out = np.zeros(gt.shape, np.int64)
        for i, where in enumerate(self.masks(gt)):
            out[where] = i + 1
        return out
