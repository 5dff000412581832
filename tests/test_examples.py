"""The README's Python tutorial runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_overrides


@pytest.mark.slow
def test_simple_experiment_runs(tmp_path: Path) -> None:
    env = {**os.environ, "DACAPO_OUTPUT_DIR": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "simple_experiment.py"), *tiny_overrides()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(FINISHED)" in proc.stdout
    assert "'task': 'affinities'" in proc.stdout
    assert (tmp_path / "outputs" / "mlflow.db").is_file()
