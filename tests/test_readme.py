"""The README's Python API example runs as a script, as written (taken from README.md itself)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import zarr

from tests.conftest import REPO


def readme_api_example() -> str:
    """The first Python block under the README's `## Python API` heading."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Python API\n") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "README.md: no python block under '## Python API'"
    return found.group(1)


def test_the_example_is_guarded_for_dask_workers() -> None:
    example = readme_api_example()
    assert 'if __name__ == "__main__":' in example
    assert "Execution(workers=2)" in example
    compile(example, "README.md", "exec")


@pytest.mark.slow
def test_readme_api_example_runs_as_a_script(tmp_path: Path, cache_dir: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_api_example())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"DACAPO_OUTPUT_DIR": str(tmp_path / "outputs"), "DACAPO_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Dask's workers imported the script without training again: one run in MLflow.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dacapo")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert out["prediction/s0"].ndim == 4  # channels, z, y, x
    # post_process wrote the labels as a label image of the prediction, as apply does.
    assert "prediction/labels/labels/s0" in out
    segmentation = zarr.open_group(str(tmp_path / "segmentation.zarr"), mode="r")
    assert "prediction/labels/labels/s0" in segmentation
    assert (tmp_path / "exported" / "apply.py").is_file()
