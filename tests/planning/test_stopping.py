"""Stopping: sized to the data, a wall-clock budget, patience, and the reason a run stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping

from dacapo_hydra.config.units import to_seconds
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.planning.stopping import plan_stopping
from dacapo_hydra.training.stopping import CriterionHistory, budget_timer, stop_reason


def test_stopping_is_sized_to_the_data() -> None:
    small = plan_stopping(96**3, (44, 44, 44), 2)
    assert (small.validation_interval, small.patience, small.iterations) == (100, 8, 6000)
    assert small.validation_samples == 10  # 96^3 / 44^3 = 10.4 crops tile it once
    large = plan_stopping(1024**3, (64, 64, 64), 2)  # 2048 iterations a pass: at most 1000
    assert (large.validation_interval, large.iterations, large.validation_samples) == (
        1000,
        60000,
        16,
    )
    middle = plan_stopping(512**3, (96, 96, 96), 2)  # 75.9 iterations: 100, a multiple of 50
    assert middle.validation_interval == 100
    assert plan_stopping(2000**2, (128, 128), 4).validation_interval == 100  # 61: at least 100


@pytest.mark.parametrize(
    ("text", "seconds"), [("20min", 1200.0), ("1.5h", 5400.0), ("90s", 90.0), ("45", 45.0)]
)
def test_budget_reads_units(text: str, seconds: float) -> None:
    assert to_seconds(text, "budget") == seconds


@pytest.mark.parametrize("text", ["soon", "-5min", "0s"])
def test_a_bad_budget_is_one_line_naming_the_key(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^budget: expected a duration such as '20min'"):
        budget_timer(text)


def _trainer(step: int, *callbacks: object) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, callbacks=list(callbacks))


def test_stop_reasons() -> None:
    assert stop_reason(_trainer(300), 300).tag == "iterations"
    stopper = EarlyStopping(monitor="validation/f1", patience=2, mode="max")
    stopper.wait_count, stopper.best_score = 2, torch.tensor(0.8)
    history = CriterionHistory("validation/f1")
    history.history = [(100, 0.5), (200, 0.8), (300, 0.7), (400, 0.75)]
    why = stop_reason(_trainer(400, stopper, history), 6000)
    assert why.tag == "no_improvement"
    assert why.line == (
        "no improvement of validation/f1 for 2 validations (best 0.8; history "
        "0.5@100, 0.8@200, 0.7@300, 0.75@400)"
    )
    timer = budget_timer("1s")
    timer.time_remaining = lambda stage: 0.0  # type: ignore[method-assign]
    assert stop_reason(_trainer(50, timer), 6000, "1s").line == (
        "budget=1s ran out at iteration 50"
    )


def _tags(result: object) -> dict[str, str]:
    client = mlflow.MlflowClient(result.tracking_uri)  # type: ignore[attr-defined]
    return client.get_run(result.run_id).data.tags  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_run_stops_when_the_criterion_stops_improving(
    compose_tiny: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    from dacapo_hydra.training.run import train

    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[
            "iterations=500",
            "validation_interval=1",
            "callbacks=early_stopping",
            "callbacks.early_stopping.patience=2",
            "trainer.optimizer.lr=0.0",  # nothing changes: no validation improves on the first
        ],
    )
    result = train(cfg)
    assert result.iterations == 3  # the first validation, then 2 without improvement
    assert _tags(result)["stop_reason"] == "no_improvement"
    assert "stopped: no improvement of validation/" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_stops_at_its_budget(compose_tiny: Callable[..., DictConfig]) -> None:
    from dacapo_hydra.training.run import train

    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=["iterations=100000", "validation_interval=5", "budget=3s"],
    )
    result = train(cfg)
    assert result.iterations < 100000
    assert _tags(result)["stop_reason"] == "budget"


@pytest.mark.slow
def test_a_budget_that_ends_before_the_first_validation_still_leaves_a_best_checkpoint(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    # Lightning validates when a callback (the budget's Timer) stops the run, so a run
    # stopped by its budget always has a model to apply, however late the interval.
    from dacapo_hydra.training.run import train

    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=["iterations=100000", "validation_interval=100000", "budget=3s"],
    )
    result = train(cfg)
    assert _tags(result)["stop_reason"] == "budget" and result.iterations < 100000
    best = Path(result.checkpoint).with_name(f"best_{result.criterion}.ckpt")
    assert best.is_file()
