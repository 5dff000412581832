"""Every option of every group composes and builds; schemas reject typos and wrong types."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from dacapo_hydra.api import compose, config_dir
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.training.build import build
from tests.conftest import TINY_DATA

GROUPS = ("datasplit", "architecture", "task", "trainer")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def test_every_group_has_at_least_two_options() -> None:
    for group in GROUPS:
        assert len(options(group)) >= 2, group


# Every option in the fast tier, except datasplits beyond the two demos: each generates
# its own synthetic data (seconds each), so those build in the slow tier.
FAST_DATASPLITS = ("synthetic_2d", "synthetic_3d")
OPTIONS = [
    (g, o)
    if g != "datasplit" or o in FAST_DATASPLITS
    else pytest.param(g, o, marks=pytest.mark.slow, id=f"{g}-{o}")
    for g in GROUPS
    for o in options(g)
]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=lambda v: str(v))
def test_option_composes_and_builds(group: str, option: str, tmp_path: Path) -> None:
    # Tasks are built on 3D data (LSDs are 3D only); the rest on the faster 2D data.
    datasplit = (
        option if group == "datasplit" else "synthetic_3d" if group == "task" else "synthetic_2d"
    )
    choices = {"datasplit": datasplit, group: option}
    cfg = compose(
        **choices,
        overrides=[*TINY_DATA.get(datasplit, []), f"paths.output_dir={tmp_path}"],
    )
    assert cfg.choices[group].rstrip("*") == option  # tiny-data overrides mark the datasplit
    built = build(cfg)
    batch = next(iter(built.datamodule.train_dataloader()))
    out = built.module(batch["raw"])
    assert out.shape == batch["target"].shape[:1] + out.shape[1:]
    assert out.shape[1] == built.task.num_channels
    assert tuple(out.shape[2:]) == tuple(batch["target"].shape[2:])


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    """Every leaf of a plain container, by its dotted key."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_keeps_its_own_values(name: str) -> None:
    # An experiment's own values win over the primary config's run fields (`_self_` first).
    own = OmegaConf.to_container(OmegaConf.load(config_dir() / "experiment" / f"{name}.yaml"))
    defaults = own.pop("defaults", [])
    assert own, f"experiment {name} sets nothing of its own"
    cfg = compose(overrides=[f"experiment={name}"])
    for key, value in _leaves(own).items():
        assert OmegaConf.select(cfg, key) == value, key
    for entry in defaults:
        for group, option in entry.items():
            group = group.removeprefix("override ").removeprefix("/")
            if group in cfg.choices:
                assert cfg.choices[group] == option, group


def test_command_line_beats_the_experiment() -> None:
    cfg = compose(overrides=["experiment=affinities_3d", "iterations=7", "task=distance"])
    assert cfg.iterations == 7 and cfg.choices["task"] == "distance"
    assert cfg.validation_interval == 250


def test_hparams_search_composes_an_optuna_sweep() -> None:
    cfg = compose(overrides=["hparams_search=optuna"], return_hydra=True)
    assert "optuna" in cfg.hydra.sweeper._target_.lower()
    assert set(cfg.hydra.sweeper.params) == {"trainer.optimizer.lr", "architecture.num_fmaps"}


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(overrides=["architecture.num_fmapz=3"])
    assert "num_fmapz" in str(err.value)


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(overrides=["trainer.batch_size=many"])
    cause = err.value.__cause__
    assert isinstance(cause, ValidationError | ConfigKeyError)
    assert "batch_size" in str(cause)


@pytest.mark.parametrize(
    ("option", "override", "key"),
    [
        ("cnnectome_unet", "num_fmaps=many", "num_fmaps"),
        ("cnnectome_unet", "fmaps_out=many", "fmaps_out"),  # `int | None` is checked too
        ("unet_tiny", "batch_norm=sometimes", "batch_norm"),
        ("monai_unet", "fmaps_out=1.5", "fmaps_out"),
        ("module", "path=[a.pt2]", "path"),
        ("cnnectome_unet", "num_fmapz=3", "num_fmapz"),
        ("monai_unet", "dims=3", "dims"),  # the run passes it: never written in a config
    ],
)
def test_architecture_schemas_made_from_constructors_name_the_key(
    option: str, override: str, key: str
) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(architecture=option, overrides=[f"architecture.{override}"])
    assert key in f"{err.value} {err.value.__cause__}"


def test_unknown_option_names_the_option() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(task="distanse")
    assert "distanse" in str(err.value)


def test_augment_lengths_in_voxels_compose_and_build(tmp_path: Path) -> None:
    base = [*TINY_DATA["synthetic_2d"], f"paths.output_dir={tmp_path}"]
    key = "trainer.augment.elastic.control_point_spacing"
    cfg = compose(datasplit="synthetic_2d", overrides=[*base, f"{key}=20vx"])
    assert cfg.trainer.augment.elastic.control_point_spacing == "20vx"
    deformation = build(cfg).datamodule.train_data.sampler.deformation
    assert deformation.spacing == (80.0, 80.0)  # 20 voxels of 4 nm
    assert deformation.sigma == (5.0, 5.0)  # the default 1.25vx
    per_axis = compose(datasplit="synthetic_2d", overrides=[*base, f"{key}=[5vx,100nm]"])
    assert build(per_axis).datamodule.train_data.sampler.deformation.spacing == (20.0, 100.0)
    too_fine = compose(datasplit="synthetic_2d", overrides=[*base, f"{key}=0.5vx"])
    with pytest.raises(ConfigError, match=rf"{key}: '0.5vx' is 2 nm, below 1 voxel"):
        build(too_fine)


def test_em_defects_lengths_build_in_3d(tmp_path: Path) -> None:
    cfg = compose(
        datasplit="synthetic_3d",
        trainer="em_defects",
        overrides=[*TINY_DATA["synthetic_3d"], f"paths.output_dir={tmp_path}"],
    )
    augment = build(cfg).datamodule.train_data.augment
    (slip,) = [t for t in augment.transforms if type(t).__name__ == "RandMisalignmentd"]
    assert slip.max_shift == 6  # 6vx


def test_overridden_group_options_are_marked() -> None:
    cfg = compose(datasplit="synthetic_2d", overrides=["datasplit.pad_mode=constant"])
    assert cfg.choices["datasplit"] == "synthetic_2d*"
    assert cfg.choices["task"] == "distance"
    assert compose(datasplit="synthetic_2d").choices["datasplit"] == "synthetic_2d"


def _user_configs(folder: Path) -> Path:
    (folder / "datasplit").mkdir(parents=True)
    (folder / "datasplit" / "my_cells.yaml").write_text(
        "defaults:\n  - synthetic_2d\n  - _self_\npad_mode: constant\n"
    )
    (folder / "experiment").mkdir()
    (folder / "experiment" / "my_quick.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /task: affinities\niterations: 7\n"
    )
    return folder


def test_a_user_config_folder_adds_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DACAPO_CONFIG_DIR", str(_user_configs(tmp_path / "mine")))
    cfg = compose(datasplit="my_cells", overrides=["experiment=my_quick"])
    assert cfg.choices["datasplit"] == "my_cells" and cfg.choices["task"] == "affinities"
    assert cfg.datasplit.pad_mode == "constant" and cfg.datasplit.dims == 2
    assert cfg.iterations == 7
    # The packaged options are still there.
    assert compose(datasplit="synthetic_3d").datasplit.dims == 3


def test_a_missing_user_config_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DACAPO_CONFIG_DIR", str(tmp_path / "absent"))
    with pytest.raises(NotADirectoryError, match=r"DACAPO_CONFIG_DIR=.*absent: no such folder"):
        compose()
