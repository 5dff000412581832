"""A checkpoint is data: its stored config builds only allow-listed targets.

A real checkpoint of a tiny training is rewritten so that its architecture is
`MarkedUNet`, a network that leaves a marker file when built: every load path
(Python and command line) must refuse it before anything runs, naming the target,
its config key, the file and `--trust-checkpoint`, and with that flag it loads.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir

from dacapo_hydra.api import compose as compose_run
from dacapo_hydra.api import config_dir
from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet
from dacapo_hydra.cli import apply_main, export_main, predict_main, validate_main
from dacapo_hydra.config import register_configs
from dacapo_hydra.data.tools.synthetic import write_synthetic
from dacapo_hydra.export.model import export_model
from dacapo_hydra.inference.apply import plan_apply
from dacapo_hydra.inference.options import ApplyOptions
from dacapo_hydra.inference.predict import predict
from dacapo_hydra.model.load import load_cached as load_model
from dacapo_hydra.training.build import build
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.trust import (
    TRUST_FLAG,
    UntrustedCheckpoint,
    check_stored_config,
    is_allowed,
    targets,
)
from tests.conftest import REPO, tiny_overrides

TARGET = "tests.test_trust.MarkedUNet"


class MarkedUNet(CNNectomeUNet):
    """A CNNectomeUNet that touches `marker` when built: proof that a config's code ran."""

    def __init__(self, *args: Any, marker: str, **kwargs: Any) -> None:
        Path(marker).touch()
        super().__init__(*args, **kwargs)


def craft(checkpoint: str | Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a real checkpoint whose stored config (`hyper_parameters`) `edit` changed."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    edit(state["hyper_parameters"])
    torch.save(state, out)
    return out


@pytest.fixture
def crafted(trained_3d: str, tmp_path: Path) -> tuple[Path, Path]:
    """(checkpoint whose architecture is MarkedUNet, the marker file it would write)."""
    marker = tmp_path / "marker"

    def edit(hparams: dict[str, Any]) -> None:
        hparams["config"]["architecture"]["_target_"] = TARGET
        hparams["config"]["architecture"]["marker"] = str(marker)

    return craft(trained_3d, tmp_path / "crafted.ckpt", edit), marker


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(
        tmp_path_factory.mktemp("vol") / "vol.zarr", dims=3, shape=[30, 60, 60], offset=[0, 0, 0]
    )


def refusal_pattern(
    path: Path, key: str = "architecture._target_", target: str = TARGET, why: str = ""
) -> str:
    """The one-line refusal: file, key, target (and why), and the flag."""
    return (
        rf"^checkpoint {re.escape(str(path))}: config key {re.escape(key)} names "
        rf"'{re.escape(target)}': {re.escape(why)}[^\n]*--trust-checkpoint[^\n]*$"
    )


def test_every_packaged_target_is_allowed() -> None:
    # Every option of every group is composed (one option per group per composition).
    register_configs()
    conf = config_dir()
    groups: dict[str, list[str]] = {}
    for yaml in sorted(conf.rglob("*.yaml")):
        parts = yaml.relative_to(conf).parts
        if len(parts) > 1 and parts[0] != "hydra":
            groups.setdefault("/".join(parts[:-1]), []).append(yaml.stem)
    found: dict[str, str] = {}
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for i in range(max(len(options) for options in groups.values())):
            choice = [f"{g}={options[i]}" for g, options in groups.items() if i < len(options)]
            for key, target in targets(compose("config", overrides=choice)):
                found.setdefault(target, f"{' '.join(choice)}: {key}")
    assert {"torch.optim.RAdam", "monai.networks.nets.SwinUNETR"} <= set(found)
    assert {t: where for t, where in found.items() if not is_allowed(t)} == {}
    # Every `_target_:` written in a YAML was composed, but Hydra's own callbacks
    # (under `hydra:`, never part of a run's config or a checkpoint).
    written = {
        match
        for yaml in conf.rglob("*.yaml")
        for match in re.findall(r"^\s*_target_:\s*(\S+)", yaml.read_text(), re.M)
    }
    assert written - set(found) == {
        "dacapo_hydra.tracking.SweepParentRun",
        "dacapo_hydra.training.process.run_dir.OutputFolderCheck",
    }


# Where a target may sit in a stored config (`hyper_parameters`), and how to put it there.
PLACES: dict[str, Callable[[dict[str, Any], str], None]] = {
    "architecture._target_": lambda h, t: h["config"]["architecture"].update(_target_=t),
    "architecture.network._target_": lambda h, t: h["config"]["architecture"].update(
        network={"_target_": t, "features": [4, 4]}
    ),
    "task.channels[1]._target_": lambda h, t: h["config"]["task"].update(
        channels=["foreground", {"_target_": t}]
    ),
    # A `_partial_` node (the optimiser) is checked like any other.
    "trainer.optimizer._target_": lambda h, t: h["config"]["trainer"]["optimizer"].update(
        _target_=t, _partial_=True
    ),
    "callbacks.probe._target_": lambda h, t: h["config"]["callbacks"].update(probe={"_target_": t}),
    # The data facts are passed to the constructors, and Hydra builds nodes among them.
    "meta.dims._target_": lambda h, t: h["meta"].update(dims={"_target_": t, "_args_": ["x"]}),
}


@pytest.mark.parametrize(
    ("key", "target", "why"),
    [
        ("architecture._target_", "os.system", "not on the allow-list"),
        ("architecture.network._target_", "builtins.exec", "not on the allow-list"),
        ("task.channels[1]._target_", "subprocess.Popen", "not on the allow-list"),
        ("trainer.optimizer._target_", "tests.test_trust.craft", "not on the allow-list"),
        ("callbacks.probe._target_", "tests.conftest.Probe", "not on the allow-list"),
        ("meta.dims._target_", "pathlib.Path.touch", "not on the allow-list"),
        (
            "architecture._target_",
            "dacapo_hydra.architectures.monai_net.hydra.utils.instantiate",
            "a function value, not a class",
        ),
        (
            "architecture._target_",
            "dacapo_hydra.architectures.base.nn.Module",
            "not a class of dacapo_hydra.architectures deriving from",
        ),
        ("trainer.optimizer._target_", "torch.optim.os.system", "it does not import"),
    ],
)
def test_targets_are_refused_wherever_they_sit(
    trained_3d: str, key: str, target: str, why: str
) -> None:
    hparams = torch.load(trained_3d, map_location="cpu", weights_only=True)["hyper_parameters"]
    check_stored_config(hparams, "x.ckpt")  # the real checkpoint passes
    PLACES[key](hparams, target)
    with pytest.raises(
        UntrustedCheckpoint, match=refusal_pattern(Path("x.ckpt"), key, target, why)
    ):
        check_stored_config(hparams, "x.ckpt")


def test_a_refused_target_is_not_even_imported(
    trained_3d: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "payload_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nf = len\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hparams = torch.load(trained_3d, map_location="cpu", weights_only=True)["hyper_parameters"]
    hparams["config"]["task"]["_target_"] = "payload_module.f"
    with pytest.raises(UntrustedCheckpoint, match="config key task._target_ names 'payload_module"):
        check_stored_config(hparams, "x.ckpt")
    assert not marker.exists() and "payload_module" not in sys.modules


def test_interpolations_are_refused_before_any_resolver_runs(trained_3d: str) -> None:
    hparams = torch.load(trained_3d, map_location="cpu", weights_only=True)["hyper_parameters"]
    payload = "${oc.decode:'{_target_: os.system, _args_: [touch /tmp/x]}'}"
    hparams["config"]["architecture"]["num_fmaps"] = payload
    with pytest.raises(
        UntrustedCheckpoint,
        match=r"^checkpoint x\.ckpt: config key architecture\.num_fmaps holds an interpolation "
        r".*--trust-checkpoint",
    ):
        check_stored_config(hparams, "x.ckpt")


def test_every_python_load_path_refuses_a_crafted_checkpoint(
    crafted: tuple[Path, Path], volume: Path, tmp_path: Path
) -> None:
    checkpoint, marker = crafted
    out = tmp_path / "out.zarr"
    loads: dict[str, Callable[[], object]] = {
        "from_checkpoint": lambda: RunModule.from_checkpoint(checkpoint),
        "load_from_checkpoint": lambda: RunModule.load_from_checkpoint(checkpoint),
        "load_model": lambda: load_model(checkpoint),
        "predict": lambda: predict(checkpoint, volume, "validate/raw", out, "p"),
        "plan_apply": lambda: plan_apply(
            volume,
            "validate/raw",
            out,
            options=ApplyOptions(checkpoint=checkpoint, params={"threshold": 0.0}),
        ),
        "export_model": lambda: export_model(checkpoint, tmp_path / "exported"),
    }
    for name, load in loads.items():
        with pytest.raises(UntrustedCheckpoint, match=refusal_pattern(checkpoint)):
            load()
        assert not marker.exists(), f"{name} ran the checkpoint's code"
    assert not out.exists() and not (tmp_path / "exported").exists()
    # Trusted, it is built (its code runs, as documented) with the trained weights.
    module = RunModule.load_from_checkpoint(checkpoint, trust=True)  # Lightning's name
    assert marker.exists() and isinstance(module.architecture, MarkedUNet)
    reference = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, reference[name])


def test_every_command_refuses_a_crafted_checkpoint_and_trust_lets_it_load(
    crafted: tuple[Path, Path],
    volume: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint, marker = crafted
    out = tmp_path / "out.zarr"
    model = ["--checkpoint", str(checkpoint)]
    predict_args = [
        *("--input", str(volume), "validate/raw", "--output", str(out)),
        *("--input-shape", "44", "44", "44", "--roi", "0:224,0:224,0:224"),
    ]
    commands: dict[str, tuple[Callable[[list[str]], None], list[str]]] = {
        "dacapo-predict": (predict_main, [*model, *predict_args]),
        "dacapo-apply": (apply_main, [*model, "--params", "threshold=0", *predict_args]),
        "dacapo-validate": (validate_main, model),
        "dacapo-export": (export_main, [*model, "--output", str(tmp_path / "exported")]),
    }
    for prog, (main, argv) in commands.items():
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ")
        assert re.match(refusal_pattern(checkpoint), lines[0].removeprefix(f"{prog}: error: "))
        assert not marker.exists(), f"{prog} ran the checkpoint's code"
    assert not out.exists() and not (tmp_path / "exported").exists()
    predict_main([*model, *predict_args, "--trust-checkpoint"])
    assert "dacapo-predict: wrote" in capsys.readouterr().out
    assert marker.exists() and (out / "prediction" / "s0").is_dir()


def test_a_start_reads_only_the_tensors_of_a_crafted_checkpoint(
    crafted: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, marker = crafted
    cfg = compose_run(
        datasplit="synthetic_3d",
        task="distance",
        overrides=[*tiny_overrides("synthetic_3d", tmp_path / "outputs"), f"start={checkpoint}"],
    )
    built = build(cfg)
    assert not marker.exists()
    reference = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in built.module.state_dict().items():
        torch.testing.assert_close(tensor, reference[name])


def test_the_readme_says_configs_run_code_and_checkpoints_are_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (REPO / "README.md").read_text()
    security = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    for words in ("Configs are code", "architecture=module", "treated as data", TRUST_FLAG):
        assert words in security
    for main in (predict_main, apply_main, validate_main, export_main):
        with pytest.raises(SystemExit):
            main(["--help"])
        assert TRUST_FLAG in capsys.readouterr().out


def test_lightning_load_from_checkpoint_is_from_checkpoint(trained_3d: str) -> None:
    loaded = RunModule.load_from_checkpoint(trained_3d)
    reference = RunModule.from_checkpoint(trained_3d)
    assert not loaded.training
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, reference.state_dict()[name])
    with pytest.raises(ValueError, match=r"^RunModule.load_from_checkpoint: strict=False, lr= "):
        RunModule.load_from_checkpoint(trained_3d, strict=False, lr=1.0)
