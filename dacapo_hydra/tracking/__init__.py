"""MLflow: the store, run names and tags, dataset inputs, models, the sweep's parent run.

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

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

GROUPS = ("datasplit", "architecture", "task", "trainer")
# Every config group a sweep may vary (conf/): its options name themselves in run names.
CONFIG_GROUPS = (
    *GROUPS,
    "lightning",
    "callbacks",
    "callbacks/progress_bar",
    "debug",
    "logger",
    "experiment",
    "hparams_search",
)
PARENT_ENV = "DACAPO_MLFLOW_PARENT_RUN_ID"
PARENT_FILE = "mlflow_parent_run_id"
AXES_ENV = "DACAPO_MLFLOW_SWEEP_AXES"
AXES_FILE = "mlflow_sweep_axes.json"
DEFAULT_STORE = Path("outputs") / "mlflow.db"
UI_ADDRESS = "http://127.0.0.1:5000"
# What MLflow 3's UI reads to show an experiment as model training rather than GenAI.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
OVERRIDE_TAG_PREFIX = "override."
DIRECTION_TAG = "criterion.higher_is_better"
_TAG_VALUE_LIMIT = 5000
_env_before_run: str | None = os.environ.get("MLFLOW_TRACKING_URI")


def resolve_store(tracking_uri: str, artifact_location: str) -> tuple[str, str | None]:
    """Absolute tracking URI and artifact URI; the sqlite file's folder is created.

    Relative paths (`sqlite:///outputs/mlflow.db`) are taken from the current folder.
    A tracking server (`http://...`) chooses its own artifact store (None here).
    This is the writer's view (training); readers use :func:`find_store`.

    It also notes `$MLFLOW_TRACKING_URI` as it is before the run: Lightning's
    MLflow logger sets it to the run's store, and :meth:`RunRecorder.start` puts
    it back, so the next run in this process resolves its own store.
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

    from dacapo_hydra.tracking.sqlite_store import prepare_store

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


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The option chosen in each group (from Hydra, or `cfg.choices` for the Python API).

    An option whose keys the command line changed is marked (:func:`mark_modified`).
    """
    if HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
        return mark_modified({g: choices.get(g) for g in GROUPS}, job_overrides())
    choices = dict(cfg.choices) if cfg.get("choices") else {}
    return {g: str(choices.get(g) or "custom") for g in GROUPS}


def mark_modified(choices: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    """Each group's option; `<option>*` where an override changed a key inside the group.

    A datasplit given by overrides (`datasplit.train=[...]`) is then not named and
    tagged as the option it started from; the `override.<key>` tags say what changed.

    Example:
        >>> mark_modified({"datasplit": "synthetic_2d", "task": "distance"},
        ...               ["datasplit.train.0.raw.dataset=raw2", "task=distance"])
        {'datasplit': 'synthetic_2d*', 'task': 'distance'}

    """
    keys = [split_override(line)[0] for line in overrides]
    changed = {key.split(".")[0] for key in keys if "." in key}
    return {
        group: f"{option or 'custom'}{'*' if group in changed and option else ''}"
        for group, option in choices.items()
    }


def split_override(line: str) -> tuple[str, str]:
    """`(key, value)` of a command-line override; `+`, `++` and `~` prefixes dropped.

    Example:
        >>> split_override("+trainer.accumulate_grad_batches=4")
        ('trainer.accumulate_grad_batches', '4')
        >>> split_override("start=run:0a1b/best_dice")
        ('start', 'run:0a1b/best_dice')

    """
    key, _, value = line.partition("=")
    return key.lstrip("+~").strip(), value.strip()


def job_overrides() -> list[str]:
    """The running job's command-line overrides (`task=affinities`, ...); none outside Hydra."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def override_tags(overrides: list[str]) -> dict[str, str]:
    """One tag `override.<key>` per command-line override, its value the override's.

    Example:
        >>> override_tags(["task=affinities", "+trainer.profiler=simple"])
        {'override.task': 'affinities', 'override.trainer.profiler': 'simple'}

    """
    tags = {}
    for line in overrides:
        key, value = split_override(line)
        if key:
            safe = re.sub(r"[^\w./ -]", "_", key)
            tags[f"{OVERRIDE_TAG_PREFIX}{safe}"] = value[:_TAG_VALUE_LIMIT]
    return tags


def sweep_axes() -> list[str]:
    """The keys a `-m` sweep varies (recorded by :class:`SweepParentRun`); [] outside one."""
    if os.environ.get(AXES_ENV):
        return list(json.loads(os.environ[AXES_ENV]))
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        marker = Path(HydraConfig.get().sweep.dir) / AXES_FILE
        if marker.exists():
            return list(json.loads(marker.read_text()))
    return []


def child_name(axes: list[str], overrides: list[str]) -> str | None:
    """A sweep job's name: what differs, short enough for MLflow's run-name column.

    A config group's option stands alone (`affinities`); any other key is written
    `name=value` with the key's last part (`lr=0.001` for `trainer.optimizer.lr`);
    the parts are joined by spaces. The full overrides are the run's `override.*` tags.

    Example:
        >>> child_name(["task", "architecture"], ["architecture=unet_small", "task=affinities"])
        'affinities unet_small'
        >>> child_name(["trainer.optimizer.lr", "seed"], ["seed=1", "trainer.optimizer.lr=1e-3"])
        'lr=1e-3 seed=1'

    """
    values = dict(split_override(line) for line in overrides)
    parts = [
        values[key] if key in CONFIG_GROUPS else f"{key.rsplit('.', 1)[-1]}={values[key]}"
        for key in axes
        if key in values
    ]
    return " ".join(parts) or None


def run_name(cfg: DictConfig, choices: dict[str, str]) -> str:
    """A readable run name.

    The config's `run_name`; in a `-m` sweep, what differs between its jobs
    (`affinities unet_small`); else the four choices joined.
    """
    if cfg.get("run_name"):
        return str(cfg.run_name)
    in_sweep = child_name(sweep_axes(), job_overrides()) if parent_run_id() else None
    return in_sweep or "-".join(choices[g] for g in GROUPS)


def parent_run_id() -> str | None:
    """The sweep's parent run, when this job is part of a `-m` sweep."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        marker = Path(HydraConfig.get().sweep.dir) / PARENT_FILE
        if marker.exists():
            return marker.read_text().strip()
    return None


def sweep_definition(config: DictConfig) -> dict[str, str]:
    """The axes of a sweep: each swept key and its values as written (`distance,affinities`).

    From the command line's sweep overrides and the sweeper's `params`
    (`hydra.sweeper.params`, e.g. an Optuna search space).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes: dict[str, str] = {}
    lines = [str(o) for o in config.hydra.overrides.task]
    for override in OverridesParser.create().parse_overrides(lines):
        if override.is_sweep_override():
            axes[override.key_or_group] = split_override(override.input_line or "")[1]
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    for key, value in (params or {}).items():
        axes.setdefault(str(key), str(value))
    return axes


class SweepParentRun(Callback):
    """Hydra callback: one MLflow parent run per `-m` sweep; each job is its child.

    The store is created here, once, before any job writes to it. The parent's id
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
            run_name=f"sweep-{sweep_dir.name}",
            tags={
                "dacapo.sweep_dir": str(sweep_dir.resolve()),
                "dacapo.kind": "sweep",
                "sweep.axes": ",".join(axes),
                **{f"sweep.{k}": v[:_TAG_VALUE_LIMIT] for k, v in axes.items()},
            },
        )
        self.run_id, self.tracking_uri, self.experiment_id = run.info.run_id, uri, experiment
        for key, values in axes.items():
            client.log_param(self.run_id, key, values[:_TAG_VALUE_LIMIT])
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(self.run_id)
        (sweep_dir / AXES_FILE).write_text(json.dumps(list(axes)))
        os.environ[PARENT_ENV] = self.run_id
        os.environ[AXES_ENV] = json.dumps(list(axes))
        log.info("sweep parent run %s over %s", self.run_id, ", ".join(axes) or "nothing")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """A failed child fails the parent (Hydra stops the sweep after it)."""
        from hydra.core.utils import JobStatus

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


def _child_score(run: Any) -> tuple[str, float, bool] | None:
    """(criterion, best score, higher is better) of a child run, or its val/loss."""
    tags = run.data.tags
    criterion = tags.get(CRITERION_TAG)
    if criterion and f"{BEST_TAG_PREFIX}{criterion}" in tags:
        score = float(json.loads(tags[f"{BEST_TAG_PREFIX}{criterion}"])["score"])
        return criterion, score, tags.get(DIRECTION_TAG, "true") == "true"
    if "val/loss" in run.data.metrics:
        return "val/loss", float(run.data.metrics["val/loss"]), False
    return None


def record_best_child(tracking_uri: str, parent_id: str) -> dict[str, Any] | None:
    """Find a sweep's best child and record it on the parent run.

    Children are compared on their task's criterion (`best.<criterion>` tags);
    when children differ in criterion (a sweep over tasks), scores of different
    criteria are not compared: each criterion gets its best child (tag
    `best_child.<criterion>`, its run name), and `best_child` is the best on the
    criterion most children share (ties: the criterion of the first child). Children
    without a validation score compare on `val/loss`. The parent gets the tags
    `best_child` (run id), `best_child.name`, `best_child.criterion`,
    `best_child.score`, a metric `validation/best_child/<criterion>` per criterion
    (after the loss curves in MLflow's charts, which sort sections by name), and a
    note (`mlflow.note.content`) that the UI shows first.

    Returns:
        `{"run_id", "name", "criterion", "score"}` of the best child, or None.

    """
    import math

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    scored = [(run, s) for run in children if (s := _child_score(run)) and math.isfinite(s[1])]
    if not scored:
        return None
    best_per: dict[str, tuple[Any, float]] = {}
    for run, (criterion, score, higher) in scored:
        held = best_per.get(criterion)
        if held is None or (score > held[1] if higher else score < held[1]):
            best_per[criterion] = (run, score)
    criterion = Counter(s[0] for _, s in scored).most_common(1)[0][0]
    run, score = best_per[criterion]
    best = {
        "run_id": run.info.run_id,
        "name": run.info.run_name,
        "criterion": criterion,
        "score": score,
    }
    client.set_tag(parent_id, "best_child", best["run_id"])
    client.set_tag(parent_id, "best_child.name", best["name"])
    client.set_tag(parent_id, "best_child.criterion", criterion)
    client.set_tag(parent_id, "best_child.score", f"{score:.6g}")
    for name, (child, value) in best_per.items():
        key = name.replace("/", "_")
        client.log_metric(parent_id, f"validation/best_child/{key}", value)
        client.set_tag(parent_id, f"best_child.{key}", child.info.run_name)
    axes = parent.data.tags.get("sweep.axes", "")
    note = (
        f"Sweep over {axes or 'its jobs'} ({len(children)} runs). Best child: "
        f"**{best['name']}** ({criterion} {score:.4g}), run `{best['run_id']}`."
    )
    if len(best_per) > 1:
        note += " Best per criterion (not comparable across criteria): " + "; ".join(
            f"{name}: **{child.info.run_name}** ({value:.4g})"
            for name, (child, value) in best_per.items()
        )
    client.set_tag(parent_id, "mlflow.note.content", note)
    return best


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
    """The run to resume and its checkpoint folder, or None.

    With `run_id`, that run; else the latest run called `name` that did not
    finish (killed, crashed, or still marked running after a `kill -9`). The run's
    folder (tag `run_dir`) must hold a checkpoint to resume from
    (:func:`dacapo_hydra.training.checkpoints.resume_candidates`); which one is
    :func:`dacapo_hydra.training.checkpoints.newest_intact`'s choice. A missing sqlite store
    is not created.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from dacapo_hydra.tracking.sqlite_store import prepare_store, sqlite_path
    from dacapo_hydra.training.checkpoints import resume_candidates

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
        if run.data.tags.get("run_dir") and resume_candidates(folder):
            return run.info.run_id, folder
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
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            run = MlflowClient(tracking_uri).get_run(run_id)
        except MlflowException:
            raise FileNotFoundError(f"no MLflow run {run_id!r} in {tracking_uri}") from None
        criterion = run.data.tags.get(CRITERION_TAG)
        name = f"best_{criterion}" if criterion else "last"
    return checkpoint_for_run(tracking_uri, run_id, name)


def restore_tracking_env() -> None:
    """Put `$MLFLOW_TRACKING_URI` back as it was before the run (see :func:`resolve_store`)."""
    if _env_before_run is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = _env_before_run


class RunRecorder:
    """What a training run records in MLflow besides Lightning's metrics and checkpoints.

    :meth:`start` (once the run exists): a tag `override.<key>` per command-line
    override (a resumed run records its changes as `resume.<n>.<key>` instead,
    :mod:`~dacapo_hydra.training.resume`), the criterion's direction, the datasplit as
    dataset inputs, and
    system metrics (`system/*`) when `mlflow.log_system_metrics` is true.
    :meth:`finish` (after training): the network as the MLflow model `model`,
    from the best checkpoint, registered when `mlflow.register_model_name` is set.

    Example:
        >>> recorder = RunRecorder.start(cfg, tracking_uri, run_id, task)  # doctest: +SKIP
        >>> recorder.finish(run_dir / "checkpoints")  # doctest: +SKIP
        'models:/m-...'

    """

    def __init__(
        self, cfg: DictConfig, tracking_uri: str, run_id: str, criterion: str, monitor: Any = None
    ) -> None:
        self.cfg = cfg
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.criterion = criterion
        self.monitor = monitor

    @classmethod
    def start(
        cls, cfg: DictConfig, tracking_uri: str, run_id: str, task: Any, resumed: bool = False
    ) -> RunRecorder:
        """Tag the run, log its dataset inputs, and start system metrics if asked.

        Args:
            cfg: the composed run config.
            tracking_uri: the MLflow store.
            run_id: the run.
            task: the run's task (its criterion and the criterion's direction).
            resumed: a resumed run keeps its inputs and `override.*` tags and continues
                its system metrics.

        """
        from mlflow.tracking import MlflowClient

        from dacapo_hydra import __version__
        from dacapo_hydra.tracking.model import dataset_inputs

        restore_tracking_env()
        client = MlflowClient(tracking_uri)
        criterion = str(task.criterion)
        higher = task.score_directions().get(criterion, True)
        tags = {
            **({} if resumed else override_tags(job_overrides())),
            DIRECTION_TAG: "true" if higher else "false",
            "dacapo.version": __version__,
        }
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        if not resumed:
            datasplit = OmegaConf.to_container(cfg.datasplit, resolve=True)
            inputs = dataset_inputs(datasplit, group_choices(cfg)["datasplit"])
            if inputs:
                client.log_inputs(run_id, datasets=inputs)
        monitor = None
        if OmegaConf.select(cfg, "mlflow.log_system_metrics", default=False):
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                run_id, resume_logging=resumed, tracking_uri=tracking_uri
            )
            monitor.start()
        return cls(cfg, tracking_uri, run_id, criterion, monitor)

    def finish(self, checkpoint_dir: str | Path) -> str | None:
        """Stop system metrics; log (and register) the model from the best checkpoint.

        Returns:
            The model's URI, or None when it could not be logged (a warning and
            the tag `model.error` say why; the checkpoints are logged regardless).

        """
        from dacapo_hydra.tracking.model import log_network, model_checkpoint

        if self.monitor is not None:
            self.monitor.finish()
        checkpoint = model_checkpoint(Path(checkpoint_dir), self.criterion)
        name = OmegaConf.select(self.cfg, "mlflow.register_model_name", default=None)
        try:
            # The checkpoint this run just wrote from the user's own (trusted) config.
            return log_network(
                self.tracking_uri, self.run_id, checkpoint, name, trust_checkpoint=True
            )
        except Exception as err:  # a model that will not save must not lose the trained run
            message = f"{type(err).__name__}: {err}"[:_TAG_VALUE_LIMIT]
            log.warning("run %s: the model was not logged to MLflow: %s", self.run_id, message)
            from mlflow.tracking import MlflowClient

            MlflowClient(self.tracking_uri).set_tag(self.run_id, "model.error", message)
            return None
