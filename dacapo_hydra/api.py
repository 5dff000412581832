"""The Python API, mirroring the command line.

Example:
    >>> from dacapo_hydra import compose, runs, train
    >>> cfg = compose(datasplit="synthetic_2d", task="affinities", overrides=["iterations=20"])
    >>> result = train(cfg)  # doctest: +SKIP
    >>> print(result.run_id, result.final_loss)  # doctest: +SKIP
    >>> runs()[["run_name", "task", "criterion", "best_score"]]  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

    from dacapo_hydra.training.run import TrainResult

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


def config_dir() -> Path:
    """The `conf/` folder: the checkout's, or the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {here} or inside it")


def compose(
    datasplit: str | None = None,
    architecture: str | None = None,
    task: str | None = None,
    trainer: str | None = None,
    overrides: Sequence[str] = (),
    config_name: str = "config",
    return_hydra: bool = False,
) -> DictConfig:
    """Compose a run config from group options and Hydra overrides.

    Args:
        datasplit: option of the `datasplit` group (default: the config's).
        architecture: option of the `architecture` group.
        task: option of the `task` group.
        trainer: option of the `trainer` group.
        overrides: further overrides, as on the command line (`iterations=100`).
        config_name: the primary config.
        return_hydra: keep Hydra's own node (`hydra.*`: sweeper, launcher, ...).

    Returns:
        The composed config, with the chosen options under `choices`.

    Example:
        >>> cfg = compose(datasplit="synthetic_2d", task="affinities", overrides=["seed=1"])
        >>> cfg.choices.task, cfg.seed
        ('affinities', 1)

    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from dacapo_hydra.config import register_configs

    register_configs()
    groups = {
        "datasplit": datasplit,
        "architecture": architecture,
        "task": task,
        "trainer": trainer,
    }
    args = [f"{g}={v}" for g, v in groups.items() if v is not None] + list(overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=args, return_hydra_config=True)
    from dacapo_hydra.tracking import mark_modified

    choices = mark_modified({g: cfg.hydra.runtime.choices.get(g) for g in groups}, args)
    with open_dict(cfg):
        if not return_hydra:
            del cfg["hydra"]
        cfg.choices = choices
    return cfg


def train(cfg: DictConfig) -> TrainResult:
    """Train a composed config; returns the MLflow run id, final losses and checkpoint.

    Example:
        >>> cfg = compose(datasplit="synthetic_2d", overrides=["iterations=20"])
        >>> result = train(cfg)  # doctest: +SKIP
        >>> result.run_id, result.best_score  # doctest: +SKIP

    """
    from dacapo_hydra.training.run import train as _train

    return _train(cfg)


def runs(tracking_uri: str | None = None, experiment: str = "dacapo") -> pd.DataFrame:
    """The training runs of an MLflow experiment as a table, newest first.

    One row per training run (a sweep's parent run is left out; its children
    name it in `parent_run_id`): `run_id`, `run_name`, `status`, the four group
    choices, the task's `criterion`, the best validation `best_score`, its
    `best_iteration` and post-processing `best_params` (a dict), `start_time`
    and `parent_run_id`. Runs never validated have NaN/None best columns.

    Args:
        tracking_uri: the MLflow store (default: as the commands find it,
            :func:`dacapo_hydra.tracking.find_store`: `$MLFLOW_TRACKING_URI`,
            `$DACAPO_OUTPUT_DIR/mlflow.db`, then `./outputs/mlflow.db`).
        experiment: the experiment's name (`mlflow.experiment_name`).

    Returns:
        A pandas DataFrame with the columns in :data:`RUN_COLUMNS`.

    Raises:
        FileNotFoundError: no store there.
        KeyError: the store has no such experiment.

    Example:
        >>> from dacapo_hydra import runs
        >>> table = runs("sqlite:///outputs/mlflow.db")  # doctest: +SKIP
        >>> table.sort_values("best_score", ascending=False)[["run_name", "best_score"]].head()
        ... # doctest: +SKIP

    """
    import json

    import pandas as pd
    from mlflow.tracking import MlflowClient

    from dacapo_hydra import tracking

    uri = tracking.find_store(tracking_uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise KeyError(f"no experiment {experiment!r} in {uri}; it has: {', '.join(names)}")
    rows = []
    token = None
    while True:
        page = client.search_runs(
            [found.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            if tags.get("dacapo.kind") == "sweep":
                continue
            criterion = tags.get(tracking.CRITERION_TAG)
            record = json.loads(tags.get(f"{tracking.BEST_TAG_PREFIX}{criterion}", "{}"))
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    **{group: tags.get(group) for group in tracking.GROUPS},
                    "criterion": criterion,
                    "best_score": record.get("score"),
                    "best_iteration": record.get("iteration"),
                    "best_params": record.get("params"),
                    "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
                    "parent_run_id": tags.get("mlflow.parentRunId"),
                }
            )
        token = page.token
        if not token:
            break
    table = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    return table.astype({"best_score": "float64", "best_iteration": "Int64"})
