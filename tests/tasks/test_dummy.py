"""The dummy task is trivial but real."""

from __future__ import annotations

import numpy as np
import torch

from dacapo_hydra.tasks.dummy import DummyTask


def test_dummy_round_trip() -> None:
    task = DummyTask(2, (4.0, 4.0))
    gt = np.zeros((6, 6), np.uint64)
    gt[1:3] = 5
    mask = np.ones(gt.shape, np.uint8)
    mask[5] = 0
    target, weight = task.targets(gt, mask)
    assert target.sum() == 12 and weight[0, 5].sum() == 0
    t, w = torch.from_numpy(target)[None], torch.from_numpy(weight)[None]
    assert task.loss(t, t, w).item() == 0 < task.loss(1 - t, t, w).item()
    output = task.post_process(target, task.parameter_grid()[0])
    assert task.evaluate(output, gt, mask) == {"dice": 1.0, "jaccard": 1.0}
