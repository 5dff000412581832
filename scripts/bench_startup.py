"""Start-up time of the package and its commands, printed as JSON.

Each command runs in a fresh interpreter (subprocess), best wall time of
`--repeats` (default 3). `heavy` lists the heavy packages (torch, Lightning,
MLflow, MONAI, zarr, ...) the command imported, read from `-X importtime`: it
should be empty for all of them.

    python scripts/bench_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pytorch_lightning", "lightning", "mlflow", "monai", "zarr", "dask", "pandas")


def entry(name: str) -> list[str]:
    """A console script as its entry point runs it, from this checkout."""
    module, function = {
        "dacapo-predict": ("dacapo_hydra.cli", "predict_main"),
        "dacapo-train": ("dacapo_hydra.cli", "train_main"),
    }[name]
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; {function}()"
    return [sys.executable, "-c", code]


COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "import dacapo_hydra": ([sys.executable, "-c", "import dacapo_hydra"], {}),
    "from dacapo_hydra import compose": (
        [sys.executable, "-c", "from dacapo_hydra import compose"],
        {},
    ),
    "python train.py --help": ([sys.executable, str(REPO / "train.py"), "--help"], {}),
    "dacapo-train --version": ([*entry("dacapo-train"), "--version"], {}),
    "dacapo-predict --help": ([*entry("dacapo-predict"), "--help"], {}),
    "shell completion (TAB after 'task=')": (
        [sys.executable, str(REPO / "train.py"), "-sc", "query=bash"],
        {"COMP_LINE": "python train.py task=", "COMP_POINT": "21"},
    ),
}


def heavy_imports(command: list[str], extra_env: dict[str, str]) -> list[str]:
    """The heavy top-level packages `command` imports."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra_env}
    proc = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip().split(".")[0]
            if name in HEAVY:
                found.add(name)
    return sorted(found)


def best_time(command: list[str], extra_env: dict[str, str], repeats: int) -> float:
    """Best wall time of `repeats` runs, seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra_env}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, (command, extra_env) in COMMANDS.items():
        results[name] = {
            "seconds": round(best_time(command, extra_env, args.repeats), 3),
            "heavy": heavy_imports(command, extra_env),
        }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {"python": sys.version.split()[0], "cpus": os.cpu_count(), "load": load, **results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
