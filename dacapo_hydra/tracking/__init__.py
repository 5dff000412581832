"""MLflow: the store, run names and tags, best results, the sweep's parent, the run's records.

One module per concern; the names below are re-exported, so `tracking.find_store`
and the like work from the package:

- :mod:`~dacapo_hydra.tracking.store`: where the store is (found for readers,
  prepared for training), experiments, UI links;
- :mod:`~dacapo_hydra.tracking.sqlite_store`: a sqlite store created safely by jobs
  started together;
- :mod:`~dacapo_hydra.tracking.server`: a tracking server that does not answer,
  reported in one line before any work;
- :mod:`~dacapo_hydra.tracking.offline`, :mod:`~.pending`, :mod:`~.sync`: a server that
  goes away mid-run: writes queued in the run folder, sent when it is back or by
  `dacapo-sync`;
- :mod:`~dacapo_hydra.tracking.names`: run names and each config group's option;
- :mod:`~dacapo_hydra.tracking.tags`: command-line overrides as tags, the
  criterion's direction;
- :mod:`~dacapo_hydra.tracking.best`: best validation results, a sweep's best child;
- :mod:`~dacapo_hydra.tracking.parent`: a `-m` sweep's parent run;
- :mod:`~dacapo_hydra.tracking.checkpoints`: a run's checkpoints, to start from or resume;
- :mod:`~dacapo_hydra.tracking.run`: what a training run records besides Lightning's;
- :mod:`~dacapo_hydra.tracking.model`: the trained network as an MLflow model, the
  datasplit as dataset inputs.
"""

from __future__ import annotations

from dacapo_hydra.tracking.best import (
    BEST_TAG_PREFIX,
    CRITERION_TAG,
    read_best,
    record_best,
    record_best_child,
)
from dacapo_hydra.tracking.checkpoints import checkpoint_for_run, resolve_start, resumable_run
from dacapo_hydra.tracking.names import (
    CONFIG_GROUPS,
    GROUPS,
    child_name,
    group_choices,
    mark_modified,
    run_name,
)
from dacapo_hydra.tracking.offline import install_offline
from dacapo_hydra.tracking.parent import (
    AXES_ENV,
    AXES_FILE,
    PARENT_ENV,
    PARENT_FILE,
    SweepParentRun,
    parent_run_id,
    sweep_axes,
    sweep_definition,
)
from dacapo_hydra.tracking.run import RunRecorder
from dacapo_hydra.tracking.server import TrackingUnreachable, check_reachable
from dacapo_hydra.tracking.store import (
    DEFAULT_STORE,
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    UI_ADDRESS,
    ensure_experiment,
    find_store,
    resolve_store,
    restore_tracking_env,
    ui_url,
)
from dacapo_hydra.tracking.sync import finish_model, sync_run_dir, waiting_note
from dacapo_hydra.tracking.tags import (
    DIRECTION_TAG,
    OVERRIDE_TAG_PREFIX,
    TAG_VALUE_LIMIT,
    flatten,
    job_overrides,
    override_tags,
    split_override,
)

__all__ = [
    "finish_model",
    "install_offline",
    "sync_run_dir",
    "waiting_note",
    "TrackingUnreachable",
    "check_reachable",
    "AXES_ENV",
    "AXES_FILE",
    "BEST_TAG_PREFIX",
    "CONFIG_GROUPS",
    "CRITERION_TAG",
    "DEFAULT_STORE",
    "DIRECTION_TAG",
    "EXPERIMENT_KIND_TAG",
    "GROUPS",
    "MODEL_TRAINING_KIND",
    "OVERRIDE_TAG_PREFIX",
    "PARENT_ENV",
    "PARENT_FILE",
    "TAG_VALUE_LIMIT",
    "UI_ADDRESS",
    "RunRecorder",
    "SweepParentRun",
    "checkpoint_for_run",
    "child_name",
    "ensure_experiment",
    "find_store",
    "flatten",
    "group_choices",
    "job_overrides",
    "mark_modified",
    "override_tags",
    "parent_run_id",
    "read_best",
    "record_best",
    "record_best_child",
    "resolve_start",
    "resolve_store",
    "restore_tracking_env",
    "resumable_run",
    "run_name",
    "split_override",
    "sweep_axes",
    "sweep_definition",
    "ui_url",
]
