"""MLflow: the store, run names and tags, the sweep's parent run.

Tracking goes to a sqlite database (MLflow 3 refuses a plain file store) and
artifacts to a local folder, both under the run's output folder by default.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

GROUPS = ("datasplit", "architecture", "task", "trainer")
PARENT_ENV = "DACAPO_MLFLOW_PARENT_RUN_ID"
PARENT_FILE = "mlflow_parent_run_id"


def resolve_store(tracking_uri: str, artifact_location: str) -> tuple[str, str]:
    """Absolute tracking URI and artifact URI; the sqlite file's folder is created.

    Relative paths (`sqlite:///outputs/mlflow.db`) are taken from the current folder.
    """
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{db}"
    elif "://" not in tracking_uri:
        raise ValueError(
            f"mlflow.tracking_uri {tracking_uri!r} is a plain path; MLflow 3 needs a database "
            "URI such as sqlite:///outputs/mlflow.db"
        )
    if "://" not in artifact_location:
        artifact_location = Path(artifact_location).expanduser().resolve().as_uri()
    return tracking_uri, artifact_location


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str) -> str:
    """The id of experiment `name`, created (with its artifact folder) if missing."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        # Another process created it between our look-up and our create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The option chosen in each group (from Hydra, or `cfg.choices` for the Python API)."""
    choices: dict[str, Any] = {}
    if HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
    elif cfg.get("choices"):
        choices = dict(cfg.choices)
    return {g: str(choices.get(g) or "custom") for g in GROUPS}


def run_name(cfg: DictConfig, choices: dict[str, str]) -> str:
    """A readable run name: the config's `run_name`, or the four choices joined."""
    return cfg.get("run_name") or "-".join(choices[g] for g in GROUPS)


def parent_run_id() -> str | None:
    """The sweep's parent run, when this job is part of a `-m` sweep."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        marker = Path(HydraConfig.get().sweep.dir) / PARENT_FILE
        if marker.exists():
            return marker.read_text().strip()
    return None


class SweepParentRun(Callback):
    """Hydra callback: one MLflow parent run per `-m` sweep; each job is its child.

    The store is created here, once, before any job writes to it. The parent's id
    goes to an environment variable (jobs in this process and its children) and to
    a file in the sweep folder (jobs launched elsewhere).
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.failed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the store and the parent run."""
        from mlflow.tracking import MlflowClient

        uri, artifacts = resolve_store(config.mlflow.tracking_uri, config.mlflow.artifact_location)
        experiment = ensure_experiment(uri, config.mlflow.experiment_name, artifacts)
        sweep_dir = Path(config.hydra.sweep.dir)
        client = MlflowClient(uri)
        run = client.create_run(
            experiment,
            run_name=f"sweep-{sweep_dir.name}",
            tags={"dacapo.sweep_dir": str(sweep_dir.resolve()), "dacapo.kind": "sweep"},
        )
        self.run_id, self.tracking_uri = run.info.run_id, uri
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(self.run_id)
        os.environ[PARENT_ENV] = self.run_id
        log.info("sweep parent run %s", self.run_id)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """A failed child fails the parent (Hydra stops the sweep after it)."""
        from hydra.core.utils import JobStatus

        if self.run_id and job_return.status == JobStatus.FAILED and not self.failed:
            self._terminate("FAILED")
            self.failed = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Mark the parent finished."""
        if self.run_id and not self.failed:
            self._terminate("FINISHED")
        os.environ.pop(PARENT_ENV, None)

    def _terminate(self, status: str) -> None:
        from mlflow.tracking import MlflowClient

        MlflowClient(self.tracking_uri).set_terminated(self.run_id, status)


def checkpoint_for_run(tracking_uri: str, run_id: str, name: str = "last") -> Path:
    """Download checkpoint `name` (e.g. `last`, `best_<criterion>`) of an MLflow run.

    Raises:
        FileNotFoundError: naming the run and the checkpoints it does have.

    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise FileNotFoundError(f"no MLflow run {run_id!r} in {tracking_uri}") from None
    available = sorted(Path(a.path).stem for a in client.list_artifacts(run_id, "checkpoints"))
    if name not in available:
        raise FileNotFoundError(
            f"MLflow run {run_id} has no checkpoint {name!r}; "
            f"it has: {', '.join(available) or 'none'}"
        )
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"checkpoints/{name}.ckpt", tracking_uri=tracking_uri
    )
    return Path(local)


BEST_TAG_PREFIX = "best."
CRITERION_TAG = "criterion"


def record_best(
    client: Any, run_id: str, criterion: str, record: dict[str, Any], default: bool = False
) -> None:
    """Record the best validation result for `criterion` as a JSON tag `best.<criterion>`.

    Args:
        client: an `MlflowClient`.
        run_id: the run.
        criterion: the score's name.
        record: at least `iteration`, `score`, `params` (the post-processing parameters).
        default: also tag `criterion` with this name (the task's default criterion).

    """
    import json

    client.set_tag(run_id, f"{BEST_TAG_PREFIX}{criterion}", json.dumps(record, sort_keys=True))
    if default:
        client.set_tag(run_id, CRITERION_TAG, criterion)


def read_best(tracking_uri: str, run_id: str, criterion: str | None = None) -> dict[str, Any]:
    """The best validation record of a run for `criterion` (default: the task's criterion).

    Returns:
        The record written by :func:`record_best`, with `criterion` added.

    Raises:
        KeyError: naming the run and the criteria it has records for.

    """
    import json

    from mlflow.tracking import MlflowClient

    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    criterion = criterion or tags.get(CRITERION_TAG)
    key = f"{BEST_TAG_PREFIX}{criterion}"
    if criterion is None or key not in tags:
        have = sorted(
            k.removeprefix(BEST_TAG_PREFIX) for k in tags if k.startswith(BEST_TAG_PREFIX)
        )
        raise KeyError(
            f"MLflow run {run_id} has no validation result for criterion {criterion!r}; "
            f"it has: {', '.join(have) or 'none (was it validated?)'}"
        )
    return {**json.loads(tags[key]), "criterion": criterion}


def resumable_run(
    tracking_uri: str, experiment_name: str, name: str, run_id: str | None = None
) -> tuple[str, Path] | None:
    """The run to resume and its last checkpoint, or None.

    With `run_id`, that run; else the latest run called `name` that did not
    finish (killed, crashed, or still marked running after a `kill -9`).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if run_id is not None:
        try:
            runs = [client.get_run(run_id)]
        except MlflowException:
            return None
    else:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return None
        quoted = name.replace("'", "\\'")
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.run_name = '{quoted}' and attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"],
        )
    for run in runs:
        checkpoint = Path(run.data.tags.get("run_dir", "")) / "checkpoints" / "last.ckpt"
        if run.data.tags.get("run_dir") and checkpoint.is_file():
            return run.info.run_id, checkpoint
    return None


def resolve_start(start: str, tracking_uri: str) -> Path:
    """A start's checkpoint: a path, or `run:<id>[/<name>]` (default: the run's best).

    `run:<id>` takes the checkpoint of the run's default criterion
    (`best_<criterion>`), or `last` if the run was never validated.
    """
    if not start.startswith("run:"):
        return Path(start)
    run_id, _, name = start.removeprefix("run:").partition("/")
    if not name:
        from mlflow.tracking import MlflowClient

        criterion = MlflowClient(tracking_uri).get_run(run_id).data.tags.get(CRITERION_TAG)
        name = f"best_{criterion}" if criterion else "last"
    return checkpoint_for_run(tracking_uri, run_id, name)
