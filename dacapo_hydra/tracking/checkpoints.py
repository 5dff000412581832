"""A run's checkpoints through MLflow: downloaded to start from, found again to resume.

A start (`start=run:<id>[/<name>]`) downloads a logged checkpoint from the store
(:func:`resolve_start`); a resume (`resume=true` or `resume=<run id>`) finds the
unfinished run and the folder its checkpoints are in (:func:`resumable_run`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dacapo_hydra.tracking.best import CRITERION_TAG
from dacapo_hydra.tracking.sqlite_store import prepare_store, sqlite_path


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


def resolve_start(start: str, tracking_uri: str) -> Path:
    """A start's checkpoint: a path, or `run:<id>[/<name>]` (default: the run's best).

    `run:<id>` takes the checkpoint of the run's default criterion
    (`best_<criterion>`), or `last` if the run was never validated.

    Example:
        >>> resolve_start("outputs/runs/cells/checkpoints/last.ckpt", "sqlite:///unused.db")
        PosixPath('outputs/runs/cells/checkpoints/last.ckpt')

    """
    if not start.startswith("run:"):
        return Path(start)
    run_id, _, name = start.removeprefix("run:").partition("/")
    if not name:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            run = MlflowClient(tracking_uri).get_run(run_id)
        except MlflowException:
            raise FileNotFoundError(f"no MLflow run {run_id!r} in {tracking_uri}") from None
        criterion = run.data.tags.get(CRITERION_TAG)
        name = f"best_{criterion}" if criterion else "last"
    return checkpoint_for_run(tracking_uri, run_id, name)


def resumable_run(
    tracking_uri: str,
    experiment_name: str,
    name: str,
    run_id: str | None,
    checkpoints: Callable[[Path], list[Path]],
) -> tuple[str, Path] | None:
    """The run to resume and its checkpoint folder, or None.

    With `run_id`, that run; else the latest run called `name` that did not
    finish (killed, crashed, or still marked running after a `kill -9`). The run's
    folder (tag `run_dir`) must hold a checkpoint to resume from. A missing sqlite
    store is not created.

    Args:
        tracking_uri: the MLflow store.
        experiment_name: the experiment the runs are in.
        name: the run name to look for when `run_id` is None.
        run_id: the run to resume, or None for the latest unfinished one called `name`.
        checkpoints: lists the checkpoints in a folder that a run may resume from
            (training's :func:`~dacapo_hydra.training.checkpoints.resume_candidates`);
            a run whose folder holds none is passed over.

    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        return None
    prepare_store(tracking_uri)
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
        folder = Path(run.data.tags.get("run_dir", "")) / "checkpoints"
        if run.data.tags.get("run_dir") and checkpoints(folder):
            return run.info.run_id, folder
    return None
