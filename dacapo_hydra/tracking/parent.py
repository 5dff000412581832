"""A `-m` sweep's MLflow parent run: created before the jobs, each job its child.

The parent's id and the swept keys reach the jobs through environment variables
(jobs in this process and its children) and files in the sweep folder (jobs
launched elsewhere, e.g. by submitit): :func:`parent_run_id` and
:func:`sweep_axes` read them back in a job.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.tracking.best import record_best_child
from dacapo_hydra.tracking.store import ensure_experiment, resolve_store, ui_url
from dacapo_hydra.tracking.tags import TAG_VALUE_LIMIT, split_override

log = logging.getLogger(__name__)

PARENT_ENV = "DACAPO_MLFLOW_PARENT_RUN_ID"
PARENT_FILE = "mlflow_parent_run_id"
AXES_ENV = "DACAPO_MLFLOW_SWEEP_AXES"
AXES_FILE = "mlflow_sweep_axes.json"


def _sweep_marker(name: str) -> Path | None:
    """The file `name` in the running `-m` sweep's folder, if it exists."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        marker = Path(HydraConfig.get().sweep.dir) / name
        if marker.exists():
            return marker
    return None


def parent_run_id() -> str | None:
    """The sweep's parent run, when this job is part of a `-m` sweep."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    marker = _sweep_marker(PARENT_FILE)
    return marker.read_text().strip() if marker is not None else None


def sweep_axes() -> list[str]:
    """The keys a `-m` sweep varies (recorded by :class:`SweepParentRun`); [] outside one."""
    if os.environ.get(AXES_ENV):
        return list(json.loads(os.environ[AXES_ENV]))
    marker = _sweep_marker(AXES_FILE)
    return list(json.loads(marker.read_text())) if marker is not None else []


def sweep_definition(config: DictConfig) -> dict[str, str]:
    """The axes of a sweep: each swept key and its values as written (`distance,affinities`).

    From the command line's sweep overrides and the sweeper's `params`
    (`hydra.sweeper.params`, e.g. an Optuna search space).
    """
    axes: dict[str, str] = {}
    lines = [str(o) for o in config.hydra.overrides.task]
    for override in OverridesParser.create().parse_overrides(lines):
        if override.is_sweep_override():
            axes[override.key_or_group] = split_override(override.input_line or "")[1]
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    for key, value in (params or {}).items():
        axes.setdefault(str(key), str(value))
    return axes


# A sweep parent's name keeps its axes to this many characters (the runs table cuts more).
NAME_AXES_LIMIT = 80


def sweep_name(axes: list[str], when: datetime) -> str:
    """The parent run's name: what the sweep varies, and when it started.

    Example:
        >>> sweep_name(["trainer.optimizer.lr", "task"], datetime(2026, 12, 7, 18, 40))
        'sweep trainer.optimizer.lr×task 12-07 18:40'
        >>> sweep_name([], datetime(2026, 12, 7, 18, 40))
        'sweep 12-07 18:40'

    """
    swept = "×".join(axes)
    if len(swept) > NAME_AXES_LIMIT:
        swept = swept[: NAME_AXES_LIMIT - 1] + "…"
    return " ".join(part for part in ("sweep", swept, when.strftime("%m-%d %H:%M")) if part)


class SweepParentRun(Callback):
    """Hydra callback: one MLflow parent run per `-m` sweep; each job is its child.

    The store is created here, once, before any job writes to it. The parent is
    named by the sweep's axes and start (:func:`sweep_name`); its folder is the tag
    `dacapo.sweep_dir`. The parent's id
    and the swept keys go to environment variables (jobs in this process and its
    children) and to files in the sweep folder (jobs launched elsewhere). The
    parent records the sweep's axes (a parameter and a `sweep.<key>` tag each);
    when the sweep ends, its best child (tags `best_child*`, metric
    `best_child/<criterion>`) and a note naming it.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.experiment_id: str | None = None
        self.failed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the store and the parent run, and record the sweep's axes."""
        from mlflow.tracking import MlflowClient

        uri, artifacts = resolve_store(config.mlflow.tracking_uri, config.mlflow.artifact_location)
        experiment = ensure_experiment(uri, config.mlflow.experiment_name, artifacts)
        sweep_dir = Path(config.hydra.sweep.dir)
        axes = sweep_definition(config)
        client = MlflowClient(uri)
        run = client.create_run(
            experiment,
            run_name=sweep_name(list(axes), datetime.now()),
            tags={
                "dacapo.sweep_dir": str(sweep_dir.resolve()),
                "dacapo.kind": "sweep",
                "sweep.axes": ",".join(axes),
                **{f"sweep.{k}": v[:TAG_VALUE_LIMIT] for k, v in axes.items()},
            },
        )
        self.run_id, self.tracking_uri, self.experiment_id = run.info.run_id, uri, experiment
        for key, values in axes.items():
            client.log_param(self.run_id, key, values[:TAG_VALUE_LIMIT])
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(self.run_id)
        (sweep_dir / AXES_FILE).write_text(json.dumps(list(axes)))
        os.environ[PARENT_ENV] = self.run_id
        os.environ[AXES_ENV] = json.dumps(list(axes))
        log.info("sweep parent run %s over %s", self.run_id, ", ".join(axes) or "nothing")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """A failed child fails the parent (Hydra stops the sweep after it)."""
        if self.run_id and job_return.status == JobStatus.FAILED and not self.failed:
            self._terminate("FAILED")
            self.failed = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Record the best child and mark the parent finished."""
        if self.run_id:
            try:
                best = record_best_child(self.tracking_uri or "", self.run_id)
            except Exception as err:  # the sweep's results stand without the summary
                log.warning("sweep %s: could not record its best child: %s", self.run_id, err)
                best = None
            if not self.failed:
                self._terminate("FINISHED")
            summary = (
                f"best child {best['name']} ({best['criterion']} {best['score']:.4g})"
                if best
                else "no child reported a score"
            )
            print(
                f"dacapo: sweep {self.run_id}: {summary}; "
                f"{ui_url(self.experiment_id or '0', self.run_id)}"
            )
        os.environ.pop(PARENT_ENV, None)
        os.environ.pop(AXES_ENV, None)

    def _terminate(self, status: str) -> None:
        from mlflow.tracking import MlflowClient

        MlflowClient(self.tracking_uri).set_terminated(self.run_id, status)
