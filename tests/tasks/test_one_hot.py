"""One-hot trains on real cross-entropy and is scored deterministically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dacapo_hydra.tasks.one_hot import OneHotTask


def _gt() -> np.ndarray:
    gt = np.zeros((8, 8), np.uint64)
    gt[:4, :4] = 1
    gt[4:, 4:] = 2
    gt[0, 7] = 3  # claimed by no class: background
    return gt


def test_targets_are_class_indices() -> None:
    task = OneHotTask(2, (4.0, 4.0), classes=["bg", "a", "b"])
    target, weight = task.targets(_gt(), np.ones((8, 8)))
    assert target.dtype == np.int64 and target.shape == (1, 8, 8)
    assert target[0, 0, 0] == 1 and target[0, 7, 7] == 2 and target[0, 0, 7] == 0
    # Frequencies 1/4, 1/4, 1/2: weights 1/(3 f).
    assert weight[0, 0, 0] == pytest.approx(4 / 3)
    assert weight[0, 0, 7] == pytest.approx(2 / 3)


def test_loss_is_weighted_cross_entropy() -> None:
    """DaCapo trains one-hot on a placeholder loss; ours is the real one."""
    task = OneHotTask(2, (4.0, 4.0), classes=["bg", "a", "b"])
    target, weight = task.targets(_gt(), np.ones((8, 8)))
    t, w = torch.from_numpy(target)[None], torch.from_numpy(weight)[None]
    logits = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = (F.cross_entropy(logits, t[:, 0], reduction="none") * w[:, 0]).mean()
    assert task.loss(logits, t, w).item() == pytest.approx(expected.item())
    perfect = F.one_hot(t[:, 0], 3).permute(0, 3, 1, 2).float() * 20
    assert task.loss(perfect, t, w).item() < 1e-6 < task.loss(logits, t, w).item()


def test_evaluation_is_deterministic_and_per_class() -> None:
    """DaCapo scores one-hot with a random evaluator; ours scores the classes."""
    task = OneHotTask(2, (4.0, 4.0), classes=["bg", "a", "b"])
    gt = _gt()
    probabilities = torch.softmax(torch.randn(1, 3, 8, 8), 1)[0].numpy()
    output = task.post_process(probabilities, task.parameter_grid()[0])
    assert task.evaluate(output, gt, None) == task.evaluate(output, gt, None)
    truth = task.classes.indices(gt)
    scores = task.evaluate(truth, gt, None)
    assert scores["a/dice"] == scores["b/dice"] == scores["dice"] == 1.0
    wrong = truth.copy()
    wrong[wrong == 2] = 1
    assert task.evaluate(wrong, gt, None)["b/recall"] == 0.0


def test_needs_a_background_and_a_class() -> None:
    with pytest.raises(ValueError, match="task.classes"):
        OneHotTask(2, (4.0, 4.0), classes=["only"])
