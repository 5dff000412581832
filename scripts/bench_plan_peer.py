"""StarDist as `bench_plan.py`'s peer: its own virtual environment and a driver subprocess.

StarDist (TensorFlow) is never a dependency of this project: the bench creates a
virtual environment of its own on first use (`tensorflow-cpu` and `stardist` pinned to
releases that resolve together for Python 3.11: TensorFlow 2.15 is the last with Keras
2, which `csbdeep` below 0.8 and `stardist` 0.9.1 are written for), then runs
`bench_plan_stardist.py` in it. The driver is copied next to the data it reads (`.npy`
files the bench writes), so the subprocess imports nothing from this project.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_VENV = Path.home() / ".cache" / "dacapo-bench" / "stardist-venv"
PINS = ("tensorflow-cpu==2.15.1", "numpy<2", "csbdeep<0.8.2", "stardist==0.9.1")
DRIVER = Path(__file__).resolve().with_name("bench_plan_stardist.py")
INSTALL_TIMEOUT_S = 1800


class PeerUnavailable(RuntimeError):
    """StarDist cannot run here; the message is one line saying why."""


def _imports(python: Path) -> bool:
    check = [str(python), "-c", "import stardist, tensorflow"]
    done = subprocess.run(check, capture_output=True, text=True, check=False, timeout=300)
    return done.returncode == 0


def _last_line(text: str) -> str:
    """The last meaningful line of pip's output (its error), without its warnings."""
    lines = [x.strip() for x in text.splitlines() if x.strip() and "WARNING" not in x]
    return lines[-1] if lines else "(no output)"


def ensure_venv(venv: Path) -> Path:
    """The Python of a virtual environment with StarDist and TensorFlow, made if missing.

    Raises:
        PeerUnavailable: with one line saying what failed (e.g. no TensorFlow wheel for
            this Python or platform, or no network).

    """
    python = venv / "bin" / "python"
    if python.exists() and _imports(python):
        return python
    if not python.exists():
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            raise PeerUnavailable(f"cannot create {venv}: {_last_line(made.stderr)}")
    install = [str(python), "-m", "pip", "install", "--quiet", *PINS]
    try:
        done = subprocess.run(
            install, capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(
            f"pip install {' '.join(PINS)} took over {INSTALL_TIMEOUT_S}s; gave up"
        ) from None
    if done.returncode != 0 or not _imports(python):
        version = f"Python {sys.version_info.major}.{sys.version_info.minor}"
        raise PeerUnavailable(
            f"cannot install TensorFlow/StarDist ({' '.join(PINS)}) for {version} into "
            f"{venv}: {_last_line(done.stderr or done.stdout)}"
        )
    return python


def run_driver(python: Path, folder: Path, voxel_size: list[float], budget_s: float) -> dict:
    """Train, tune thresholds on validate and predict test with StarDist in `folder`.

    Returns:
        The driver's JSON report (training seconds, epochs, thresholds, time to the best
        weights), or `error` with the driver's last line.

    """
    driver = folder / DRIVER.name
    shutil.copyfile(DRIVER, driver)
    command = [
        str(python),
        str(driver),
        "--folder",
        str(folder),
        "--voxel-size",
        *[str(v) for v in voxel_size],
        "--budget-seconds",
        str(budget_s),
    ]
    with open(folder / "stardist.log", "w") as log:
        done = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=folder
        )
    report = folder / "report.json"
    if done.returncode != 0 or not report.exists():
        tail = (folder / "stardist.log").read_text().strip().splitlines()[-1:] or ["?"]
        return {"error": f"StarDist driver failed ({done.returncode}): {tail[0]}"}
    result: dict[str, Any] = json.loads(report.read_text())
    return result
