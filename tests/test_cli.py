"""The commands as a user runs them: train.py runs and sweeps, bad input, --help, --version."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dacapo_hydra import __version__
from dacapo_hydra.cli import (
    apply_main,
    export_main,
    predict_main,
    validate_main,
)
from dacapo_hydra.cli.apply import apply_options, apply_parser
from dacapo_hydra.cli.common import execution, option_arguments, prediction_options
from dacapo_hydra.cli.predict import predict_parser
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.inference.options import Execution, LabelsOptions, PredictOptions, option
from dacapo_hydra.tracking import ui_url
from tests.conftest import REPO, tiny_overrides


def run_train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def runs(tmp_path: Path) -> list:
    db = tmp_path / "outputs" / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("dacapo")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.slow
def test_train_py_runs_and_prints_a_summary(tmp_path: Path) -> None:
    proc = run_train(
        [*tiny_overrides("synthetic_2d"), "datasplit=synthetic_2d", "task=affinities"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("dacapo: run ")]
    assert len(summary) == 1
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_id in summary[0]
    assert "mlflow ui --backend-store-uri sqlite:///" in summary[0]
    assert run.data.tags["task"] == "affinities"
    # tiny_overrides change keys inside the datasplit: its tag says it was modified.
    assert run.data.tags["datasplit"] == "synthetic_2d*"
    assert Path(run.data.tags["run_dir"], "checkpoints", "last.ckpt").is_file()
    # Every command-line override is a tag; the summary ends with the run's page in the UI.
    assert run.data.tags["override.task"] == "affinities"
    assert run.data.tags["override.iterations"] == "4"
    assert run.data.tags["override.datasplit.synthetic.shape"] == "[96,96]"
    url = ui_url(run.info.experiment_id, run.info.run_id)
    assert summary[0].endswith(url)
    assert Path(run.data.tags["run_dir"], "dacapo-train.log").is_file()


@pytest.mark.slow
def test_sweep_smoke_names_children_and_records_the_best(tmp_path: Path) -> None:
    args = ["-m", "seed=0,1", "datasplit=synthetic_2d", *tiny_overrides("synthetic_2d")]
    proc = run_train([*args, "iterations=1", "validation_interval=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    (parent,) = [r for r in all_runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["seed=0", "seed=1"]
    assert parent.data.params == {"seed": "0,1"}
    assert parent.data.tags["sweep.axes"] == "seed"
    assert parent.data.tags["best_child"] in {r.info.run_id for r in children}
    assert parent.data.tags["best_child.criterion"] == children[0].data.tags["criterion"]
    assert all(r.data.tags["override.iterations"] == "1" for r in children)
    assert f"/runs/{parent.info.run_id}" in proc.stdout


@pytest.mark.slow
def test_sweep_gives_child_runs_under_one_parent(tmp_path: Path) -> None:
    args = [
        "-m",
        "task=distance,affinities",
        "architecture=unet_tiny,unet_small",
        "datasplit=synthetic_2d",
        *tiny_overrides("synthetic_2d"),
        "iterations=2",
        "validation_interval=1",
    ]
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    parents = [r for r in all_runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {(r.data.tags["task"], r.data.tags["architecture"]) for r in children} == {
        ("distance", "unet_tiny"),
        ("distance", "unet_small"),
        ("affinities", "unet_tiny"),
        ("affinities", "unet_small"),
    }
    assert all(r.info.status == "FINISHED" for r in children)
    assert {r.info.run_name for r in children} == {
        f"{t} {a}" for t in ("distance", "affinities") for a in ("unet_tiny", "unet_small")
    }
    assert parents[0].data.params == {
        "task": "distance,affinities",
        "architecture": "unet_tiny,unet_small",
    }
    assert parents[0].data.tags["best_child"] in {r.info.run_id for r in children}


@pytest.mark.slow
def test_parallel_sweep_shares_one_parent(tmp_path: Path) -> None:
    args = [
        "-m",
        "hydra/launcher=parallel",
        "task=distance,affinities",
        "datasplit=synthetic_2d",
        *tiny_overrides("synthetic_2d"),
        "iterations=2",
        "validation_interval=1",
    ]
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    (parent,) = [r for r in all_runs if r.data.tags.get("dacapo.kind") == "sweep"]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["task"] for r in children) == ["affinities", "distance"]
    assert all(r.info.status == "FINISHED" for r in [parent, *children])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ("task=distanse", "distanse"),
        ("trainer.batch_sise=2", "batch_sise"),
        ("datasplit.train.0.raw.container=/no/such/volume.zarr", "/no/such/volume.zarr"),
        ("architecture.input_shape=45", "input_shape"),
    ],
)
def test_bad_input_exits_with_a_message_and_no_run(
    override: str, culprit: str, tmp_path: Path
) -> None:
    proc = run_train(
        [*tiny_overrides("synthetic_2d"), "datasplit=synthetic_2d", override], tmp_path
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if culprit in line]
    assert errors, proc.stderr
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))
    assert runs(tmp_path) == []


COMMANDS = {
    "dacapo-predict": predict_main,
    "dacapo-apply": apply_main,
    "dacapo-validate": validate_main,
    "dacapo-export": export_main,
}


@pytest.mark.parametrize("name", COMMANDS)
def test_version_and_help_with_examples_and_defaults(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[name](["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"{name} {__version__} (dacapo-hydra)"
    with pytest.raises(SystemExit):
        COMMANDS[name](["--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and f"  {name} --run-id <run id>" in text
    for flag in ("--run-id", "--checkpoint PATH", "--checkpoint-name NAME", "--tracking-uri"):
        assert flag in text
    assert "(default: best)" in text


def test_command_dtypes_are_the_options() -> None:
    from dacapo_hydra.inference.options import APPLY_DTYPES, DTYPES

    for parser, dtypes in ((predict_parser(), DTYPES), (apply_parser(), APPLY_DTYPES)):
        (action,) = [a for a in parser._actions if a.dest == "dtype"]
        assert tuple(action.choices) == dtypes


def test_train_help_and_version(tmp_path: Path) -> None:
    proc = run_train(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dacapo-train (or python train.py)")
    assert "Examples:" in proc.stdout and "dacapo-train -m task=distance,affinities" in proc.stdout
    assert "task: affinities" in proc.stdout and "schema/" not in proc.stdout
    proc = run_train(["--version"], tmp_path)
    assert proc.stdout.startswith(f"dacapo-train {__version__} (dacapo-hydra; Hydra ")


def test_help_lists_the_user_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf" / "datasplit").mkdir(parents=True)
    (tmp_path / "conf" / "datasplit" / "my_cells.yaml").write_text("defaults:\n  - synthetic_2d\n")
    monkeypatch.setenv("DACAPO_CONFIG_DIR", str(tmp_path / "conf"))
    proc = run_train(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = next(x for x in proc.stdout.splitlines() if x.strip().startswith("datasplit: "))
    assert {"my_cells", "nuclei_2d"} <= {n.strip() for n in listed.split(":", 1)[1].split(",")}
    monkeypatch.setenv("DACAPO_CONFIG_DIR", str(tmp_path / "absent"))
    proc = run_train(["--help"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dacapo-train: error: DACAPO_CONFIG_DIR={tmp_path / 'absent'}: no such folder "
        "(expected a folder of config groups, e.g. datasplit/my_cells.yaml)"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["dacapo-predict", "--run-id", "0a1b", "--input", "v.zarr", "raw", "--output", "o.zarr"],
        ["dacapo-apply", "--run-id", "0a1b", "--input", "v.zarr", "raw", "--output", "o.zarr"],
        ["dacapo-validate", "--run-id", "0a1b"],
        ["dacapo-validate", "0a1b"],
        ["dacapo-export", "--run-id", "0a1b", "--output", "exported"],
    ],
)
def test_a_command_in_an_empty_folder_creates_no_store(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DACAPO_OUTPUT_DIR", raising=False)
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[argv[0]](argv[1:])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line == (
        f"{argv[0]}: error: no MLflow store: --tracking-uri, $MLFLOW_TRACKING_URI and "
        f"$DACAPO_OUTPUT_DIR are unset and {tmp_path / 'outputs' / 'mlflow.db'} does not exist"
    )
    assert list(tmp_path.iterdir()) == []


def test_one_model_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--input", "v.zarr", "raw", "--output", "o.zarr"], "give a model"),
        (
            ["--run-id", "a", "--checkpoint", "b.ckpt", "--input", "v", "r", "--output", "o"],
            "give one model, not --run-id and --checkpoint",
        ),
        (
            ["--checkpoint", "b.ckpt", "--input", "v", "r", "--output", "o", "p", "q"],
            "unrecognized arguments: p q",  # --output takes the container alone
        ),
    ):
        with pytest.raises(SystemExit):
            predict_main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        apply_main(
            ["--run-id", "a", "--checkpoint-name", "last", "--input", "v", "r", "--output", "o"]
        )
    assert "uses a run's best_<criterion> checkpoint" in capsys.readouterr().err


MODEL_AND_DATA = ["--checkpoint", "m.ckpt", "--input", "v.zarr", "raw", "--output", "o.zarr"]


def test_prediction_arguments_are_the_option_fields() -> None:
    """Defaults come from the option dataclasses; each given value reaches its field."""
    plain = predict_parser().parse_args(MODEL_AND_DATA)
    assert prediction_options(plain) == PredictOptions()
    assert execution(plain) == Execution()
    given = predict_parser().parse_args(
        [
            *MODEL_AND_DATA,
            *("--overlap", "0.25", "--window-batch", "4", "--levels", "3"),
            *("--input-voxel-size", "8", "8", "--roi", "0:80,0:160", "--devices", "0,1"),
            *("--dtype", "uint8", "--value-range", "-1", "1", "--mirror", "--overwrite"),
        ]
    )
    assert prediction_options(given) == PredictOptions(
        overlap=0.25,
        window_batch=4,
        levels=3,
        raw_voxel_size=(8.0, 8.0),
        roi=Roi((0.0, 0.0), (80.0, 160.0)),
        dtype="uint8",
        value_range=(-1.0, 1.0),
        mirror=True,
        overwrite=True,
    )
    assert execution(given) == Execution(devices=("0", "1"), workers=2)


def test_apply_arguments_make_its_labels_options() -> None:
    args = apply_parser().parse_args(
        [
            *MODEL_AND_DATA,
            *("--params", "threshold=0.5", "--labels-block-shape", "64", "64"),
            *("--context", "8", "8", "--connected-components", "--levels", "2"),
            *("--block-shape", "32", "32", "--labels-dataset", "cells"),
        ]
    )
    options = apply_options(args)
    assert options.labels == LabelsOptions(
        block_shape=(64, 64), context=(8, 8), connected_components=True, levels=2
    )
    assert options.prediction.block_shape == (32, 32) and options.labels_name(False) == "cells"
    assert options.params == {"threshold": 0.5}


def test_an_option_the_command_line_cannot_read_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Odd:
        mapping: dict[str, int] = option(None, "a mapping")

    with pytest.raises(TypeError, match=r"Odd.mapping: no command line for dict\[str, int\]"):
        option_arguments(predict_parser(), Odd)
