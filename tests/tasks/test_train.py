"""Each task trains end to end on the tiny synthetic data (as `python train.py task=<name>`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from omegaconf import DictConfig

from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.build import build
from dacapo_hydra.training.run import train

CASES = [
    pytest.param("distance", "synthetic_2d", marks=pytest.mark.slow),  # conftest trains it
    ("distance_instances", "synthetic_2d"),
    pytest.param(
        "affinities", "synthetic_2d", marks=pytest.mark.slow
    ),  # trained in test_tracking too
    pytest.param("affinities_lsds", "synthetic_3d", marks=pytest.mark.slow),  # LSDs: 3D only
    pytest.param("one_hot", "synthetic_2d", marks=pytest.mark.slow),
    # Variants of the routes above, trained in the slow tier (the fast tier stays short).
    pytest.param("inner_distance", "synthetic_2d", marks=pytest.mark.slow),
    pytest.param("hot_distance", "synthetic_2d", marks=pytest.mark.slow),
    pytest.param("dummy", "synthetic_2d", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("task", "datasplit"), CASES)
def test_task_trains(task: str, datasplit: str, compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(datasplit=datasplit, task=task, overrides=["iterations=2"])
    result = train(cfg)
    assert result.iterations == 2
    assert math.isfinite(result.final_loss)
    assert result.val_loss is not None and math.isfinite(result.val_loss)


def test_bad_task_value_fails_before_training(compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(task="one_hot", overrides=["task.classes=[only]"])
    with pytest.raises(ConfigError, match="task.classes"):
        build(cfg)
