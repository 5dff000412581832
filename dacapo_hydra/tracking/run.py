"""What a training run records in MLflow besides Lightning's metrics and checkpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dacapo_hydra import __version__
from dacapo_hydra.tracking.best import BEST_TAG_PREFIX
from dacapo_hydra.tracking.model import dataset_inputs, log_network, model_checkpoint
from dacapo_hydra.tracking.names import group_choices
from dacapo_hydra.tracking.registry import register_described
from dacapo_hydra.tracking.store import restore_tracking_env
from dacapo_hydra.tracking.tags import DIRECTION_TAG, TAG_VALUE_LIMIT, job_overrides, override_tags

log = logging.getLogger(__name__)


def log_inputs(client: Any, run_id: str, inputs: list[Any], attempts: int = 5) -> None:
    """`client.log_inputs`, retried when jobs started together insert the same dataset.

    MLflow's sqlite store checks for a dataset, then inserts it: two runs of one
    experiment logging the same dataset at once can both miss it and one insert fails
    on the table's unique key. The retry finds the row the other job wrote.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if "UNIQUE constraint" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


class RunRecorder:
    """What a training run records in MLflow besides Lightning's metrics and checkpoints.

    :meth:`start` (once the run exists): a tag `override.<key>` per command-line
    override (a resumed run records its changes as `resume.<n>.<key>` instead,
    :mod:`~dacapo_hydra.training.process.resume`), the criterion's direction, the datasplit as
    dataset inputs, and
    system metrics (`system/*`) when `mlflow.log_system_metrics` is true.
    :meth:`finish` (after training): the network as the MLflow model `model`,
    from the best checkpoint, registered when `mlflow.register_model_name` is set
    (the version described, with aliases `latest` and `best`:
    :mod:`~dacapo_hydra.tracking.registry`).

    Example:
        >>> recorder = RunRecorder.start(cfg, tracking_uri, run_id, task)  # doctest: +SKIP
        >>> recorder.finish(run_dir / "checkpoints", RunModule.from_checkpoint)  # doctest: +SKIP
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
                log_inputs(client, run_id, inputs)
        monitor = None
        if OmegaConf.select(cfg, "mlflow.log_system_metrics", default=False):
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                run_id, resume_logging=resumed, tracking_uri=tracking_uri
            )
            monitor.start()
        return cls(cfg, tracking_uri, run_id, criterion, monitor)

    def finish(self, checkpoint_dir: str | Path, load: Callable[[Path], Any]) -> str | None:
        """Stop system metrics; log (and register) the model from the best checkpoint.

        Args:
            checkpoint_dir: the run's checkpoints.
            load: builds the trained module from a checkpoint (the run passes
                :meth:`~dacapo_hydra.training.module.RunModule.from_checkpoint`, trusted:
                the checkpoint it just wrote from the user's own config).

        Returns:
            The model's URI, or None when it could not be logged (a warning and
            the tag `model.error` say why; the checkpoints are logged regardless).

        """
        from mlflow.tracking import MlflowClient

        if self.monitor is not None:
            self.monitor.finish()
        checkpoint = model_checkpoint(Path(checkpoint_dir), self.criterion)
        name = OmegaConf.select(self.cfg, "mlflow.register_model_name", default=None)
        try:
            module = load(checkpoint)
            uri = log_network(self.tracking_uri, self.run_id, module, checkpoint, name)
        except Exception as err:  # a model that will not save must not lose the trained run
            message = f"{type(err).__name__}: {err}"[:TAG_VALUE_LIMIT]
            log.warning("run %s: the model was not logged to MLflow: %s", self.run_id, message)
            MlflowClient(self.tracking_uri).set_tag(self.run_id, "model.error", message)
            return None
        if name:
            self.describe(name, list(module.spec.voxel_size))
        return uri

    def describe(self, name: str, voxel_size: list[float]) -> str | None:
        """Describe the version this run registered under `name` and move its aliases.

        See :mod:`dacapo_hydra.tracking.registry`: datasplit, task, criterion and
        score, voxel size; aliases `latest` and (if its score is the best) `best`.
        """
        from mlflow.tracking import MlflowClient

        run = MlflowClient(self.tracking_uri).get_run(self.run_id)
        tags = run.data.tags
        record = json.loads(tags.get(f"{BEST_TAG_PREFIX}{self.criterion}", "{}"))
        facts = {
            "choices": group_choices(self.cfg),
            "criterion": self.criterion,
            "score": record.get("score"),
            "iteration": record.get("iteration"),
            "voxel_size": [float(v) for v in voxel_size],
            "higher_is_better": tags.get(DIRECTION_TAG, "true") == "true",
        }
        return register_described(
            self.tracking_uri, name, self.run_id, run.info.run_name or "", facts
        )
