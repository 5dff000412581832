"""bioimage.io packages of any finished run: a valid name, the spec's tolerances, all or nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dacapo_hydra.cli import export_main
from dacapo_hydra.export.bioimageio import package_name, reproducibility_tolerance
from dacapo_hydra.export.model import export_model


def renamed(checkpoint: str | Path, out: Path, run_name: str | None) -> Path:
    """The checkpoint saved again as the checkpoint of a run named `run_name`."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["config"]["run_name"] = run_name
    torch.save(state, out)
    return out


@pytest.fixture
def api_run(trained_2d: str, tmp_path: Path) -> Path:
    """The tiny 2D distance checkpoint (its outputs all negative) of a run named `api`."""
    return renamed(trained_2d, tmp_path / "api.ckpt", "api")


def leftovers(folder: Path) -> list[str]:
    """Temporary siblings an export left beside `folder`."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_names_follow_the_spec() -> None:
    assert package_name(None, "api") == "dacapo-hydra api"
    assert package_name(None, "synthetic_3d-unet_tiny-distance-default").startswith("synthetic_3d")
    assert len(package_name(None, "x" * 300)) == 64
    assert package_name(None, "run:1/2") == "run-1-2"
    with pytest.raises(ValueError, match="5 to 64 characters"):
        package_name("abc", "api")


@pytest.mark.parametrize(
    ("values", "absolute"),
    [
        ([-0.1517, -0.9], 0.0),  # the default distance run's: no positive maximum
        ([0.0, 0.2, 0.4], 4e-5),  # 1e-4 of the range
        ([-1000.0, 0.01], 1e-4),  # capped at 1 % of the maximum
        ([3.0, 3.0], 3e-4),  # constant: 1e-4 of its magnitude
    ],
)
def test_tolerances_stay_within_the_spec(values: list[float], absolute: float) -> None:
    found, relative = reproducibility_tolerance(np.array(values))
    assert found == pytest.approx(absolute)
    assert relative <= 0.01
    assert found == 0 or found <= 0.01 * max(values)


def test_a_run_named_api_exports_with_a_valid_name(api_run: Path, tmp_path: Path) -> None:
    exported = export_model(api_run, tmp_path / "model")
    assert exported.metadata["name"] == "dacapo-hydra api"
    named = export_model(api_run, tmp_path / "named", name="EM cells (distance)")
    assert named.metadata["name"] == "EM cells (distance)"
    assert leftovers(tmp_path / "model") == leftovers(tmp_path / "named") == []


@pytest.mark.slow  # bioimageio.spec validates twice: seconds
def test_a_failed_package_writes_nothing(
    api_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("bioimageio.spec")
    folder = tmp_path / "model"
    with pytest.raises(ValueError, match="does not validate"):
        export_model(api_run, folder, bioimageio=True, authors=["A/B"])  # '/' is refused
    assert not folder.exists() and leftovers(folder) == []
    # Over an earlier export, a failure leaves the earlier one whole.
    export_model(api_run, folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match="does not validate"):
        export_model(api_run, folder, bioimageio=True, authors=["A/B"], overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == before and leftovers(folder) == []
    # On the command line: one line naming the culprit, exit status 2.
    with pytest.raises(SystemExit) as exited:
        export_main(
            ["--checkpoint", str(api_run), "--output", str(tmp_path / "b"), "--name", "a/b"]
        )
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--name 'a/b'" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
@pytest.mark.parametrize("run_name", ["api", None])
def test_bioimageio_test_passes_the_package(
    trained_2d: str, tmp_path: Path, run_name: str | None
) -> None:
    """The default distance run (negative outputs) and a run named `api`, as `bioimageio test`."""
    pytest.importorskip("bioimageio.core")
    checkpoint = renamed(trained_2d, tmp_path / "run.ckpt", run_name)
    export_main(
        ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "pkg"), "--bioimageio"]
    )
    rdf = yaml.safe_load((tmp_path / "pkg" / "rdf.yaml").read_text())
    assert len(rdf["name"]) >= 5
    tolerance = rdf["config"]["bioimageio"]["reproducibility_tolerance"][0]
    peak = float(np.load(tmp_path / "pkg" / "sample_output.npy").max())
    assert tolerance["absolute_tolerance"] <= max(0.0, 0.01 * peak)
    bioimageio = Path(sys.executable).with_name("bioimageio")
    proc = subprocess.run(
        [str(bioimageio), "test", str(tmp_path / "pkg" / "rdf.yaml")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
