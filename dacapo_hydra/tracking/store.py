"""Where the MLflow store is: found for the commands that read runs, prepared for training.

Tracking goes to a sqlite database (MLflow 3 refuses a plain file store) and
artifacts to a local folder, both under the run's output folder by default.

Where the store is, for training (`conf/config.yaml`'s `mlflow.tracking_uri`):

1. an explicit override: `mlflow.tracking_uri=sqlite:////data/mlflow.db`;
2. the environment: `MLFLOW_TRACKING_URI`;
3. the default: `sqlite:///<paths.output_dir>/mlflow.db`, where `paths.output_dir`
   is `$DACAPO_OUTPUT_DIR` or `outputs`.

The commands that read runs (`dacapo-predict`, `dacapo-apply`, `dacapo-validate`,
`dacapo-export`, :func:`dacapo_hydra.runs`) look in the same order
(:func:`find_store`): `--tracking-uri`, `MLFLOW_TRACKING_URI`,
`$DACAPO_OUTPUT_DIR/mlflow.db`, then `./outputs/mlflow.db`; they never create a
store, so a command run in the wrong folder says where it looked instead of
leaving an empty database behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from dacapo_hydra.tracking.sqlite_store import prepare_store

DEFAULT_STORE = Path("outputs") / "mlflow.db"
UI_ADDRESS = "http://127.0.0.1:5000"
# What MLflow 3's UI reads to show an experiment as model training rather than GenAI.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
_env_before_run: str | None = os.environ.get("MLFLOW_TRACKING_URI")


def resolve_store(tracking_uri: str, artifact_location: str) -> tuple[str, str | None]:
    """Absolute tracking URI and artifact URI; the sqlite file's folder is created.

    Relative paths (`sqlite:///outputs/mlflow.db`) are taken from the current folder.
    A tracking server (`http://...`) chooses its own artifact store (None here).
    This is the writer's view (training); readers use :func:`find_store`.

    It also notes `$MLFLOW_TRACKING_URI` as it is before the run: Lightning's
    MLflow logger sets it to the run's store, and
    :meth:`~dacapo_hydra.tracking.run.RunRecorder.start` puts it back
    (:func:`restore_tracking_env`), so the next run in this process resolves its own store.
    """
    global _env_before_run
    _env_before_run = os.environ.get("MLFLOW_TRACKING_URI")
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve()
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"mlflow.tracking_uri: cannot create the folder of {db}: {err.strerror}"
            ) from err
        tracking_uri = f"sqlite:///{db}"
    elif "://" not in tracking_uri:
        raise ValueError(
            f"mlflow.tracking_uri {tracking_uri!r} is a plain path; MLflow 3 needs a database "
            "URI such as sqlite:///outputs/mlflow.db"
        )
    elif tracking_uri.split("://")[0] in ("http", "https", "databricks"):
        return tracking_uri, None
    if "://" not in artifact_location:
        artifact_location = Path(artifact_location).expanduser().resolve().as_uri()
    return tracking_uri, artifact_location


def restore_tracking_env() -> None:
    """Put `$MLFLOW_TRACKING_URI` back as it was before the run (see :func:`resolve_store`)."""
    if _env_before_run is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = _env_before_run


def find_store(tracking_uri: str | None = None) -> str:
    """The MLflow store that commands read runs from; never creates one.

    The order: `tracking_uri` (e.g. `--tracking-uri`), `$MLFLOW_TRACKING_URI`,
    `$DACAPO_OUTPUT_DIR/mlflow.db`, `./outputs/mlflow.db` (training writes to the
    same place, see the module's docstring). A sqlite store must exist.

    Args:
        tracking_uri: an explicit store, e.g. `sqlite:////data/outputs/mlflow.db`.

    Returns:
        The tracking URI, with a sqlite path made absolute.

    Raises:
        FileNotFoundError: one line naming where it looked.

    Example:
        >>> find_store("http://mlflow.example.org:5000")
        'http://mlflow.example.org:5000'

    """
    candidates = [
        ("--tracking-uri", tracking_uri),
        ("$MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI")),
    ]
    output_dir = os.environ.get("DACAPO_OUTPUT_DIR")
    if output_dir:
        candidates.append(("$DACAPO_OUTPUT_DIR", f"sqlite:///{Path(output_dir) / 'mlflow.db'}"))
    for origin, uri in candidates:
        if not uri:
            continue
        if not uri.startswith("sqlite:///"):
            if "://" not in uri:
                raise FileNotFoundError(
                    f"{origin}={uri!r} is a plain path; MLflow 3 needs a database URI such as "
                    "sqlite:///outputs/mlflow.db"
                )
            return uri
        db = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        if db.is_file():
            return f"sqlite:///{db}"
        raise FileNotFoundError(f"no MLflow store at {db} (from {origin})")
    default = DEFAULT_STORE.resolve()
    if default.is_file():
        return f"sqlite:///{default}"
    raise FileNotFoundError(
        f"no MLflow store: --tracking-uri, $MLFLOW_TRACKING_URI and $DACAPO_OUTPUT_DIR are "
        f"unset and {default} does not exist"
    )


def ui_url(experiment_id: str, run_id: str | None = None, address: str = UI_ADDRESS) -> str:
    """The MLflow UI page of a run (or of the experiment's runs), as `mlflow ui` serves it.

    Both ask for the model-training view (`workflowType`): MLflow 3.x otherwise
    opens on the GenAI view, where a run without a logged model (a sweep's parent)
    is listed as an "evaluation".

    Example:
        >>> ui_url("1", "0a1b2c")
        'http://127.0.0.1:5000/#/experiments/1/runs/0a1b2c?workflowType=machine_learning'
        >>> ui_url("1")
        'http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning'

    """
    page = "runs" if run_id is None else f"runs/{run_id}"
    return f"{address}/#/experiments/{experiment_id}/{page}?workflowType=machine_learning"


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with its artifact folder) if missing.

    The experiment is tagged as model training (`mlflow.experimentKind`), so MLflow
    3's UI opens it on its runs rather than on the GenAI overview. A sqlite store is
    created first if it is missing, safely when jobs start together
    (:func:`dacapo_hydra.tracking.sqlite_store.prepare_store`).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    prepare_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(
                name,
                artifact_location=artifact_location,
                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
            )
        except MlflowException:
            # Another process created it between our look-up and our create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
        else:
            return experiment_id
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id
