"""Training extras kept off the step: the loss is logged where Lightning writes logs, and
MLflow's metric writes are queued off the training thread and drained before the run ends.

The per-iteration cost itself is measured by `scripts/bench_train.py` (`extras`), not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.run import train


@pytest.mark.slow
def test_the_loss_is_logged_every_n_steps_and_every_value_reaches_mlflow(
    compose_tiny: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[int] = []
    log = RunModule.log

    def counting(self: RunModule, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "train/loss":
            logged.append(self.global_step)
        log(self, name, *args, **kwargs)

    writes: list[tuple[str, Any]] = []
    log_batch = MlflowClient.log_batch

    def recording(self: MlflowClient, run_id: str, *args: Any, **kwargs: Any) -> Any:
        kind = "metrics" if kwargs.get("metrics") else "params" if kwargs.get("params") else ""
        writes.append((kind, kwargs.get("synchronous", True)))
        return log_batch(self, run_id, *args, **kwargs)

    monkeypatch.setattr(RunModule, "log", counting)
    monkeypatch.setattr(MlflowClient, "log_batch", recording)
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        overrides=[
            "iterations=11",
            "validation_interval=100",
            "snapshot_interval=0",
            "lightning.log_every_n_steps=4",
        ],
    )
    result = train(cfg)
    # Steps 4 and 8 (global_step counts the steps before), and the last: the final loss.
    assert logged == [3, 7, 10]
    client = MlflowClient(result.tracking_uri)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    history = client.get_metric_history(result.run_id, "train/loss")
    assert sorted(m.step for m in history) == [3, 7]
    assert all(math.isfinite(m.value) for m in history)
    assert sorted(m.step for m in client.get_metric_history(result.run_id, "lr-RAdam")) == [3, 7]
    assert math.isfinite(result.final_loss)
    # Lightning's metric writes were queued; parameters were written at once.
    assert {sync for kind, sync in writes if kind == "metrics"} == {False}
    assert {sync for kind, sync in writes if kind == "params"} == {True}
