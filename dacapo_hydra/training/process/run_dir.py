"""The run's folder: its own for every run, and writable, checked before anything is written.

Hydra names a run's folder from `hydra.run.dir` (`conf/config.yaml`):
`<paths.output_dir>/runs/<time>_<suffix>`, and a sweep's from `hydra.sweep.dir`
(`multirun/<time>_<suffix>/<job>`). The time has one-second resolution, so jobs
started in the same second would share a folder (and overwrite each other's
checkpoints); the suffix, `${dacapo_unique:}`, is 8 random hex digits drawn once
per process (a cached resolver: a sweep's jobs share their sweep's folder).

:class:`OutputFolderCheck`, a Hydra callback listed first in `hydra.callbacks`,
creates the folder before Hydra does, so an output folder that cannot be written
stops the command with one line naming it, instead of Hydra's tracebacks.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dacapo_hydra.config.unique import unique_suffix


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh run folder outside Hydra (the Python API): `runs/<time>_<name>_<suffix>`.

    Example:
        >>> folder = new_run_dir("outputs", "cells")
        >>> folder.parent, folder.name.split("_")[2], len(folder.name.split("_")[3])
        (PosixPath('outputs/runs'), 'cells', 8)

    """
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    safe = re.sub(r"[^\w.=,+-]", "-", name)  # e.g. a modified option's `*`: no glob in paths
    return Path(output_dir) / "runs" / f"{stamp}_{safe}_{unique_suffix()}"


def _nearest_existing(path: Path) -> Path:
    """`path`, or the closest of its parents that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def make_output_folder(folder: str | Path, what: str) -> None:
    """Create `folder`; if it cannot be, say so in one line and exit with status 2.

    Args:
        folder: the run's (or sweep's) folder.
        what: what the folder is, for the message ("the run folder").

    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = _nearest_existing(path)
        print(
            f"dacapo-train: error: cannot create {what} {path}: {err.strerror} in {where}; "
            "give a writable folder with paths.output_dir=<folder> or $DACAPO_OUTPUT_DIR",
            file=sys.stderr,
        )
        sys.exit(2)


class OutputFolderCheck(Callback):
    """Hydra callback: create the run's or the sweep's folder first, failing in one line.

    A folder named with what only a running job knows (`${hydra:job.num}`) is left
    to Hydra.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create `hydra.run.dir` before Hydra does."""
        self._make(config, "hydra.run.dir", "the run folder")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create `hydra.sweep.dir` before the launcher does."""
        self._make(config, "hydra.sweep.dir", "the sweep folder")

    @staticmethod
    def _make(config: DictConfig, key: str, what: str) -> None:
        try:
            folder = OmegaConf.select(config, key, throw_on_missing=True)
        except OmegaConfBaseException:
            return
        make_output_folder(folder, what)
