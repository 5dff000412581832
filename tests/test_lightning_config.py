"""Lightning's Trainer and callbacks from config, free optimisers, debug presets, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.api import compose, config_dir
from dacapo_hydra.config.lightning import RUN_OWNED, trainer_arguments
from dacapo_hydra.config.targets import optimizer_factories
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.run import train
from tests.conftest import REPO, Probe, tiny_overrides


def _no_run(cfg: DictConfig) -> bool:
    """No MLflow store, hence no run, was created under the config's output folder."""
    return not (Path(cfg.paths.output_dir) / "mlflow.db").exists()


def _statuses(cfg: DictConfig, experiment: str = "dacapo") -> list[str]:
    client = MlflowClient(f"sqlite:///{Path(cfg.paths.output_dir).resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r.info.status for r in runs]


def test_groups_have_their_options() -> None:
    for group, expected in {
        "lightning": {"default"},
        "callbacks": {"default", "early_stopping", "none"},
        "callbacks/progress_bar": {"tqdm", "rich"},
        "debug": {"default", "fdr", "overfit", "profiler"},
        "logger": {"mlflow"},
    }.items():
        assert {p.stem for p in (config_dir() / group).glob("*.yaml")} == expected, group


def test_schema_optimiser_fields_do_not_leak() -> None:
    fast = compose(trainer="fast").trainer
    assert dict(fast.optimizer) == {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3}
    assert fast.scheduler is None


@pytest.mark.slow
def test_optimiser_and_schedule_are_checked_by_signature() -> None:
    def refused(overrides: list[str], trainer: str = "default") -> str:
        cfg = compose(trainer=trainer, overrides=overrides)
        with pytest.raises(ConfigError) as err:
            optimizer_factories(cfg.trainer)
        return str(err.value)

    # RAdam's own argument stays when only the target changes: named, with the fix.
    message = refused(["trainer.optimizer._target_=torch.optim.SGD"])
    assert message.startswith(
        "trainer.optimizer.decoupled_weight_decay: torch.optim.SGD takes no argument"
    )
    assert "\n" not in message
    assert refused(["+trainer.optimizer.momentum=0.9"], "fast").startswith(
        "trainer.optimizer.momentum: torch.optim.Adam takes no argument 'momentum'"
    )
    assert "is not a torch.optim.optimizer.Optimizer" in refused(
        ["trainer.optimizer._target_=torch.nn.Linear"]
    )
    assert "does not import" in refused(["trainer.optimizer._target_=torch.optim.Adamm"])
    assert refused(["+trainer.scheduler.gamma=0.5"]).startswith("trainer.scheduler.gamma: ")
    linear = [f"~trainer.scheduler.{k}" for k in ("start_factor", "end_factor", "total_iters")]
    step = "trainer.scheduler._target_=torch.optim.lr_scheduler.StepLR"
    assert refused([step, *linear]).startswith(
        "trainer.scheduler.step_size: torch.optim.lr_scheduler.StepLR needs it"
    )
    plateau = "trainer.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau"
    assert "ReduceLROnPlateau needs a monitored score" in refused([plateau, *linear])
    sgd = compose(
        trainer="fast",
        overrides=["trainer.optimizer._target_=torch.optim.SGD", "+trainer.optimizer.momentum=0.9"],
    )
    optimizer, scheduler = optimizer_factories(sgd.trainer)
    built = optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(built, torch.optim.SGD) and built.defaults["momentum"] == 0.9
    assert scheduler is None


def test_a_bad_optimiser_argument_is_refused_before_a_run_exists(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    cfg = compose_tiny(overrides=["trainer.optimizer._target_=torch.optim.SGD"])
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer\.decoupled_weight_decay: "):
        train(cfg)
    assert _no_run(cfg)


@pytest.mark.slow
def test_sgd_trains(compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[
            "trainer.optimizer._target_=torch.optim.SGD",
            "+trainer.optimizer.momentum=0.9",
            "iterations=2",
            "validation_interval=2",
            "callbacks=none",
        ],
    )
    result = train(cfg)
    assert result.iterations == 2
    state = torch.load(result.checkpoint, weights_only=False)
    assert state["optimizer_states"][0]["param_groups"][0]["momentum"] == 0.9


def test_lightning_node_is_checked_against_pl_trainer() -> None:
    arguments = trainer_arguments(compose(overrides=["lightning.accumulate_grad_batches=2"]))
    assert arguments["accumulate_grad_batches"] == 2
    assert arguments["log_every_n_steps"] == 30  # null: iterations / 10, at most 50
    assert trainer_arguments(compose(overrides=["iterations=5000"]))["log_every_n_steps"] == 50
    with pytest.raises(ConfigError, match=r"^lightning\.bogus: not an argument of pl\.Trainer$"):
        trainer_arguments(compose(overrides=["+lightning.bogus=1"]))
    with pytest.raises(ConfigError, match="did you mean accumulate_grad_batches"):
        trainer_arguments(compose(overrides=["+lightning.accumulate_grad_batchs=2"]))
    for key in RUN_OWNED:
        with pytest.raises(ConfigError, match=rf"^lightning\.{key}: set by the run from "):
            trainer_arguments(compose(overrides=[f"+lightning.{key}=null"]))
    with pytest.raises(ConfigCompositionException, match=r"lightning\.bogus"):
        compose(overrides=["lightning.bogus=1"])


def test_a_profiler_target_is_instantiated() -> None:
    from pytorch_lightning.profilers import SimpleProfiler

    arguments = trainer_arguments(
        compose(
            overrides=[
                "lightning.profiler={_target_:pytorch_lightning.profilers.SimpleProfiler}",
                "+lightning.profiler.filename=profile",
            ]
        )
    )
    assert isinstance(arguments["profiler"], SimpleProfiler)
    assert trainer_arguments(compose(overrides=["debug=profiler"]))["profiler"] == "simple"


def test_lightning_arguments_have_one_home() -> None:
    # The run's own fields no longer stand for pl.Trainer arguments: only `lightning.*` does.
    for old in ("accelerator", "devices"):
        with pytest.raises(ConfigCompositionException, match=old):
            compose(overrides=[f"{old}=cpu"])
    arguments = trainer_arguments(
        compose(overrides=["lightning.accelerator=cpu", "lightning.gradient_clip_val=1.0"])
    )
    assert arguments["accelerator"] == "cpu" and arguments["gradient_clip_val"] == 1.0


def test_unknown_lightning_flag_is_refused_before_a_run_exists(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    cfg = compose_tiny(overrides=["+lightning.bogus=1"])
    with pytest.raises(ConfigError, match=r"^lightning\.bogus: "):
        train(cfg)
    assert _no_run(cfg)
    bad_callback = compose_tiny(overrides=["+callbacks.early_stopping.patience=2"])
    with pytest.raises(ConfigError, match=r"^callbacks\.early_stopping: expected a node"):
        train(bad_callback)
    keep_all = compose_tiny(overrides=["+callbacks.model_checkpoint.save_last=true"])
    with pytest.raises(ConfigError, match=r"^callbacks\.model_checkpoint\.save_last: the run"):
        train(keep_all)
    assert _no_run(keep_all)


@pytest.mark.slow
def test_trainer_flag_and_callbacks_reach_the_trainer(
    compose_tiny: Callable[..., DictConfig],
) -> None:
    cfg = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[
            "lightning.accumulate_grad_batches=2",
            "+callbacks.probe._target_=tests.conftest.Probe",
            "callbacks.model_checkpoint.save_top_k=2",
            "iterations=4",
            "validation_interval=1",
            "snapshot_interval=0",
        ],
    )
    result = train(cfg)
    assert Probe.seen["accumulate_grad_batches"] == 2
    assert {
        "Probe",
        "ModelCheckpoint",
        "LearningRateMonitor",
        "TQDMProgressBar",
        "WholeVolumeValidation",
        "LastCheckpoint",
    } <= set(Probe.seen["callbacks"])
    assert result.iterations == 4
    # Validation counts iterations (optimiser steps), not the accumulated batches.
    client = MlflowClient(result.tracking_uri)
    steps = [m.step for m in client.get_metric_history(result.run_id, "validation/dice")]
    assert sorted(steps) == [1, 2, 3, 4]
    assert client.get_metric_history(result.run_id, "lr-Adam")  # LearningRateMonitor
    # Periodic checkpoints obey save_top_k: the latest two; last and best are the run's.
    folder = Path(result.checkpoint).parent
    kept = {p.name for p in folder.glob("*.ckpt")}
    assert kept == {"iteration_000003.ckpt", "iteration_000004.ckpt", "last.ckpt", "best_dice.ckpt"}
    logged = {Path(a.path).name for a in client.list_artifacts(result.run_id, "checkpoints")}
    assert logged == kept


@pytest.mark.slow
def test_debug_fdr_runs(compose_tiny: Callable[..., DictConfig]) -> None:
    cfg = compose_tiny(datasplit="synthetic_2d", trainer="fast", overrides=["debug=fdr"])
    assert cfg.lightning.fast_dev_run is True and cfg.mlflow.experiment_name == "debug"
    result = train(cfg)
    assert result.iterations == 1
    assert Path(result.checkpoint).name == "last.ckpt" and Path(result.checkpoint).is_file()
    assert _statuses(cfg, "debug") == ["FINISHED"]


@pytest.mark.slow
def test_resume_with_another_callback_set(compose_tiny: Callable[..., DictConfig]) -> None:
    common = ["iterations=4", "validation_interval=2", "snapshot_interval=0"]
    crashed = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[
            *common,
            "+callbacks.crash._target_=tests.conftest.Crash",
            "+callbacks.crash.at=3",
        ],
    )
    with pytest.raises(RuntimeError, match="crash at iteration 3"):
        train(crashed)
    assert _statuses(crashed) == ["FAILED"]
    resumed = compose_tiny(
        datasplit="synthetic_2d",
        trainer="fast",
        overrides=[
            *common,
            "resume=true",
            "callbacks=early_stopping",
            "callbacks/progress_bar=rich",
        ],
    )
    result = train(resumed)
    assert result.iterations == 4
    assert _statuses(resumed) == ["FINISHED"]
    assert torch.load(result.checkpoint, weights_only=True)["global_step"] == 4


def _train_py(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs")}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_train_py_keeps_the_experiments_values(tmp_path: Path) -> None:
    proc = _train_py(["experiment=affinities_3d", "--cfg", "job"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = OmegaConf.create(proc.stdout)
    assert (cfg.iterations, cfg.validation_interval) == (1000, 250)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+lightning.bogus=1", "lightning.bogus: not an argument of pl.Trainer"),
        ("+trainer.optimizer.momentum=0.9", "trainer.optimizer.momentum: torch.optim.RAdam"),
    ],
)
def test_train_py_refuses_a_bad_key_in_one_line(
    override: str, message: str, tmp_path: Path
) -> None:
    proc = _train_py(
        [*tiny_overrides("synthetic_2d"), "datasplit=synthetic_2d", override], tmp_path
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("dacapo: error: ")] == [
        line for line in proc.stderr.splitlines() if message in line
    ]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
