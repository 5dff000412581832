"""`dacapo-plan` writes an experiment that composes; a run's own overrides beat the plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from dacapo_hydra.api import compose, config_dir
from dacapo_hydra.cli.plan import plan_main
from dacapo_hydra.config import register_configs
from dacapo_hydra.planning.experiment import apply_plan, override_keys, split_overrides
from tests.data.test_fingerprint import _container

FACTORS = [[1, 2, 2], [1, 2, 2], [2, 2, 2]]  # 40 x 8 x 8 nm, balls of 128 nm radius


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user config folder with `datasplit/mine.yaml` over a zarr of known balls."""
    path = _container(tmp_path / "balls.zarr")
    folder = tmp_path / "conf"
    (folder / "datasplit").mkdir(parents=True)
    entry = {part: {"container": str(path), "dataset": part} for part in ("raw", "gt", "mask")}
    node = {
        "defaults": ["/schema/datasplit/datasplit@_here_", "_self_"],
        "dims": 3,
        "normalize": {"mode": "minmax", "min": 0, "max": 1000},
        "train": [{"name": "t", **entry}],
        "validate": [{"name": "v", **entry}],
    }
    (folder / "datasplit" / "mine.yaml").write_text(yaml.safe_dump(node))
    monkeypatch.setenv("DACAPO_CONFIG_DIR", str(folder))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return folder


def _planned(given: list[str]):  # noqa: ANN202
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=given)
        return apply_plan(cfg, given)


def test_dacapo_plan_writes_an_experiment_that_composes(
    user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_main(["datasplit=mine", "task=affinities", "--gpu-memory", "0"])
    out = capsys.readouterr().out
    assert "data.object_radius.z" in out and "architecture.downsample_factors" in out
    written = user_dir / "experiment" / "plan_mine_affinities.yaml"
    assert f"wrote {written}" in out
    text = written.read_text()
    assert text.startswith("# @package _global_") and "override /plan: none" in text
    cfg = compose(overrides=["experiment=plan_mine_affinities"])
    assert cfg.choices.architecture == "cnnectome_unet" and cfg.choices.task == "affinities"
    assert list(cfg.architecture.downsample_factors) == FACTORS
    assert cfg.architecture.padding == "same" and cfg.trainer.batch_size == 2
    assert cfg.callbacks.early_stopping.patience == 8 and cfg.plan.mode == "none"
    assert cfg.trainer.augment.rotation.planes == "yx"
    assert list(cfg.architecture.input_shape) == [16, 88, 88]  # 128 MiB on a CPU


def test_dacapo_plan_keeps_the_command_lines_values(
    user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_main(["datasplit=mine", "task=affinities", "iterations=77", "--name", "mine_77"])
    cfg = compose(overrides=["experiment=mine_77"])
    assert cfg.iterations == 77


def test_an_override_beats_the_plan(user_dir: Path) -> None:
    given = ["datasplit=mine", "task=affinities", "iterations=7", "architecture.num_fmaps=4"]
    planned, plan = _planned(given)
    assert plan is not None
    assert planned.iterations == 7 and planned.architecture.num_fmaps == 4
    assert list(planned.architecture.downsample_factors) == FACTORS  # the rest is planned
    assert planned.plan.record["overridden"] == ["architecture.num_fmaps", "iterations"]
    assert planned.validation_interval == plan.get("validation_interval")


def test_a_chosen_architecture_beats_the_planned_one(user_dir: Path) -> None:
    given = ["datasplit=mine", "task=affinities", "architecture=unet_tiny"]
    planned, plan = _planned(given)
    tiny = compose(datasplit="mine", task="affinities", architecture="unet_tiny")
    assert planned.architecture == tiny.architecture
    assert all(k.startswith("architecture") for k in planned.plan.record["overridden"])
    assert planned.trainer.batch_size == plan.get("trainer.batch_size")


def test_demo_datasplits_and_plan_none_are_not_planned(user_dir: Path) -> None:
    for given in (["datasplit=synthetic_2d"], ["datasplit=mine", "plan=none"]):
        cfg, plan = _planned(given)
        assert plan is None and cfg.iterations == 300


def test_override_keys_and_which_the_plan_keeps() -> None:
    assert override_keys(["architecture=unet_small", "++iterations=5"]) == [
        "architecture",
        "iterations",
    ]
    from dacapo_hydra.planning.plan import Plan

    plan = Plan()
    plan.add("architecture", "cnnectome_unet", "")
    plan.add("architecture.input_shape", [8, 8], "")
    plan.add("trainer.batch_size", 2, "")
    applied, overridden = split_overrides(plan, ["architecture.input_shape=[16,16]"])
    assert applied == ["architecture=cnnectome_unet", "++trainer.batch_size=2"]
    assert overridden == ["architecture.input_shape"]


def test_planned_networks_build(user_dir: Path) -> None:
    import hydra

    for family in ("cnnectome_unet", "monai_unet"):
        given = ["datasplit=mine", "task=affinities", f"plan.architecture={family}"]
        planned, plan = _planned(given)
        net = hydra.utils.instantiate(planned.architecture, dims=3, in_channels=1)
        shape = tuple(planned.architecture.input_shape)
        assert net.is_valid_input_shape(shape), family
        assert plan.get("architecture") == family


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--gpu-memory", "-1"], "dacapo-plan: error: --gpu-memory: expected GiB >= 0, got -1.0"),
        (["--name", "a b"], "dacapo-plan: error: --name: expected letters, digits"),
        (["plan.architecture=vnet"], "dacapo-plan: error: plan.architecture: expected one of"),
    ],
)
def test_bad_input_is_one_line(
    user_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        plan_main(["datasplit=mine", "--dry-run", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and "\n" not in err


def test_without_a_config_folder_it_says_where_to_write(
    user_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DACAPO_CONFIG_DIR")
    with pytest.raises(SystemExit):
        plan_main(["datasplit=synthetic_2d"])
    assert capsys.readouterr().err.strip() == (
        "dacapo-plan: error: no config folder: set DACAPO_CONFIG_DIR or give --config-dir "
        "(or --dry-run)"
    )


@pytest.mark.slow
def test_train_py_with_only_a_datasplit_uses_the_plan(user_dir: Path, tmp_path: Path) -> None:
    from tests.test_cli import run_train, runs

    proc = run_train(
        [
            "datasplit=mine",
            "task=affinities",
            "budget=20s",
            "validation_interval=2",  # an override: wins over the plan's 100
            "lightning.enable_progress_bar=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dacapo: planned from the data" in proc.stdout
    assert "stopped: budget=20s ran out at iteration" in proc.stdout
    (run,) = runs(tmp_path)
    tags, params = run.data.tags, run.data.params
    assert (tags["architecture"], tags["plan"], tags["stop_reason"]) == (
        "cnnectome_unet",
        "auto",
        "budget",
    )
    assert params["validation_interval"] == "2" and params["plan.values.validation_interval"]
    assert params["plan.overridden"] == "['validation_interval']"
    assert params["architecture.downsample_factors"] == str(FACTORS)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    assert "plan.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
