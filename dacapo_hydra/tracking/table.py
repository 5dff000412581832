"""The training runs of an experiment as a pandas table (:func:`dacapo_hydra.runs`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dacapo_hydra.tracking.best import BEST_TAG_PREFIX, CRITERION_TAG
from dacapo_hydra.tracking.names import GROUPS
from dacapo_hydra.tracking.store import find_store

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = (
    "run_id",
    "run_name",
    "status",
    "datasplit",
    "architecture",
    "task",
    "trainer",
    "criterion",
    "best_score",
    "best_iteration",
    "best_params",
    "start_time",
    "parent_run_id",
)


def runs_table(tracking_uri: str | None = None, experiment: str = "dacapo") -> pd.DataFrame:
    """The training runs of an MLflow experiment as a table, newest first.

    One row per training run (a sweep's parent run is left out; its children
    name it in `parent_run_id`): `run_id`, `run_name`, `status`, the four group
    choices, the task's `criterion`, the best validation `best_score`, its
    `best_iteration` and post-processing `best_params` (a dict), `start_time`
    and `parent_run_id`. Runs never validated have NaN/None best columns.

    Args:
        tracking_uri: the MLflow store (default: :func:`~dacapo_hydra.tracking.find_store`:
            `$MLFLOW_TRACKING_URI`, `$DACAPO_OUTPUT_DIR/mlflow.db`, then `./outputs/mlflow.db`).
        experiment: the experiment's name (`mlflow.experiment_name`).

    Returns:
        A pandas DataFrame with the columns in :data:`RUN_COLUMNS`.

    Raises:
        FileNotFoundError: no store there.
        KeyError: the store has no such experiment.

    """
    import pandas as pd
    from mlflow.tracking import MlflowClient

    uri = find_store(tracking_uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise KeyError(f"no experiment {experiment!r} in {uri}; it has: {', '.join(names)}")
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.search_runs(
            [found.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        rows += [_row(run) for run in page if run.data.tags.get("dacapo.kind") != "sweep"]
        token = page.token
        if not token:
            break
    table = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    return table.astype({"best_score": "float64", "best_iteration": "Int64"})


def _row(run: Any) -> dict[str, Any]:
    """A training run's row of :func:`runs_table`."""
    import pandas as pd

    tags = run.data.tags
    criterion = tags.get(CRITERION_TAG)
    record = json.loads(tags.get(f"{BEST_TAG_PREFIX}{criterion}", "{}"))
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        **{group: tags.get(group) for group in GROUPS},
        "criterion": criterion,
        "best_score": record.get("score"),
        "best_iteration": record.get("iteration"),
        "best_params": record.get("params"),
        "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
        "parent_run_id": tags.get("mlflow.parentRunId"),
    }
