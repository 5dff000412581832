"""Class balancing: DaCapo's clipped frequencies, kept running across crops."""

from __future__ import annotations

import numpy as np
import pytest

from dacapo_hydra.tasks.balance import ClassBalancer


def test_binary_weights_by_hand() -> None:
    positive = np.zeros((1, 10), bool)
    positive[0, :2] = True  # foreground frequency 2/10
    weights = ClassBalancer(1, 2, 0.05, 0.95)(positive, np.ones(10))
    assert weights[0, :2] == pytest.approx([1 / (2 * 0.2)] * 2)
    assert weights[0, 2:] == pytest.approx([1 / (2 * 0.8)] * 8)


def test_frequencies_are_clipped_and_masked() -> None:
    positive = np.zeros((1, 100), bool)
    positive[0, 0] = True  # 1 %: clipped up to 10 %
    mask = np.ones(100)
    mask[50:] = 0  # frequency among the 50 annotated voxels is 2 %
    weights = ClassBalancer(1, 2, 0.1, 0.9)(positive, mask)
    assert weights[0, 0] == pytest.approx(1 / (2 * 0.1))
    assert weights[0, 1] == pytest.approx(1 / (2 * 0.9))
    assert not weights[0, 50:].any()


def test_frequencies_run_across_crops() -> None:
    balancer = ClassBalancer(1, 2, 0.01, 0.99)
    first = np.zeros((1, 10), bool)
    first[0, :5] = True
    balancer(first, np.ones(10))
    second = np.zeros((1, 10), bool)
    second[0, 0] = True
    # Running frequency: (5 + 1) / 20 = 0.3, not this crop's 0.1.
    weights = balancer(second, np.ones(10))
    assert weights[0, 0] == pytest.approx(1 / (2 * 0.3))
    assert weights[0, 1] == pytest.approx(1 / (2 * 0.7))


def test_many_classes() -> None:
    classes = np.array([[0, 0, 1, 2, 2, 2, 2, 2, 2, 2]])
    weights = ClassBalancer(1, 3, 0.05, 0.95)(classes, np.ones(10))
    assert weights[0].tolist() == pytest.approx(
        [1 / (3 * 0.2)] * 2 + [1 / (3 * 0.1)] + [1 / (3 * 0.7)] * 7
    )


def test_bad_clip_is_named() -> None:
    with pytest.raises(ValueError, match="clip_min"):
        ClassBalancer(1, 2, 0.6, 0.4)
