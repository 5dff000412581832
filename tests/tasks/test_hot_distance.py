"""Hot distance: masks and distances together, two post-processings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacapo_hydra.tasks.hot_distance import HotDistanceTask


def test_targets_loss_and_both_heads() -> None:
    task = HotDistanceTask(2, (10.0, 10.0), scale_factor=50.0, clip_distance=100.0)
    gt = np.zeros((12, 16), np.uint64)
    gt[:, 4:10] = 2
    mask = np.ones(gt.shape, np.uint8)
    target, weight = task.targets(gt, mask)
    assert task.num_channels == 2 and target.shape == weight.shape == (2, 12, 16)
    assert target[0, 5, 4] == 1 and target[0, 5, 3] == 0
    assert target[1, 5, 4] == pytest.approx(np.tanh(5.0 / 50.0))
    assert target[1, 5, 3] == pytest.approx(np.tanh(-5.0 / 50.0))

    t, w = torch.from_numpy(target)[None], torch.from_numpy(weight)[None]
    logits = torch.cat([(t[:, :1] * 2 - 1) * 30, t[:, 1:]], dim=1)
    assert task.loss(logits, t, w).item() < 1e-6
    assert task.loss(torch.zeros_like(t), t, w).item() > 0.1
    activated = task.activation(logits)[0].numpy()
    assert np.allclose(activated[0], target[0], atol=1e-6)

    sources = {p["source"] for p in task.parameter_grid()}
    assert sources == {"hot", "distance"}
    for params in task.parameter_grid():
        if params["threshold"] in (0.5, 0.0):
            output = task.post_process(activated, params)
            assert task.evaluate(output, gt, mask)["dice"] == 1.0
    with pytest.raises(KeyError, match="source"):
        task.post_process(activated, {"source": "other", "threshold": 0.5})
