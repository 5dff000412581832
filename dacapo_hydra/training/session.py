"""A run's MLflow run, as the train verb sees it: opened, recorded, ended with a status.

:class:`MlflowSession` opens the MLflow run (or, resuming, joins it) on rank 0 and
gives every rank its id; rank 0 alone writes to it, so on the other ranks each
method does nothing and Lightning gets a `DummyLogger`. As a context manager it
ends the run when the block raises: KILLED for a stop signal (named in the
`stop_reason` tag), FAILED for anything else. A fit that ends normally is FINISHED
(Lightning's logger ends the run; :meth:`MlflowSession.finish` records why it stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, MLFlowLogger
from pytorch_lightning.loggers.logger import DummyLogger

from dacapo_hydra import tracking
from dacapo_hydra.planning.record import record_config
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.training import stopping
from dacapo_hydra.training.module import RunModule
from dacapo_hydra.training.process import launch, stops
from dacapo_hydra.training.process.distributed import World
from dacapo_hydra.training.process.resume import ResumePoint, record_resume
from dacapo_hydra.training.process.start_point import Start

log = logging.getLogger(__name__)


def run_logger(uri: str, **kwargs: Any) -> MLFlowLogger:
    """Lightning's MLflow logger of the run, its metrics written off the training thread.

    `synchronous=False`: Lightning's metric writes go to MLflow's async queue, so a
    training step never waits on the store (a sqlite write takes tens of ms). Ending the
    run (`set_terminated`, which Lightning's `finalize` calls) drains the queue first.
    """
    return MLFlowLogger(tracking_uri=uri, log_model=False, synchronous=False, **kwargs)


def _new_run_logger(cfg: DictConfig, start: Start) -> MLFlowLogger:
    """A logger for a new MLflow run, tagged with the group choices (and sweep parent)."""
    tags = {**start.choices, "run_dir": str(start.run_dir.resolve())}
    parent = tracking.parent_run_id()
    if parent:
        tags["mlflow.parentRunId"] = parent
    return run_logger(
        start.uri,
        experiment_name=cfg.mlflow.experiment_name,
        run_name=start.name,
        tags=tags,
        artifact_location=start.artifacts,
    )


class MlflowSession:
    """The run's MLflow run: rank 0 opens or resumes it and writes to it; other ranks do nothing.

    Args:
        cfg: the run's config.
        world: the run's processes.
        start: where the run starts (:class:`~dacapo_hydra.training.process.start_point.Start`).
        signal_of: the stop signal that ended the run with an exception (`"SIGTERM"`),
            None for an error.

    Attributes:
        run_id: the MLflow run, on every rank.
        experiment_id: its experiment ("" on ranks other than 0).
        logger: Lightning's logger (a `DummyLogger` on ranks other than 0).
        client: an `MlflowClient` whose writes wait in the run folder while a tracking
            server is away (None on ranks other than 0).
        signal_name: after the block raised, the signal that stopped it (None for an error).

    """

    def __init__(
        self,
        cfg: DictConfig,
        world: World,
        start: Start,
        signal_of: Callable[[BaseException], str | None],
    ) -> None:
        self.cfg = cfg
        self.start = start
        self.is_zero = world.is_zero
        self.signal_name: str | None = None
        self._signal_of = signal_of
        self.experiment_id = ""
        self.logger: Logger = DummyLogger()
        self.run_id: str = world.from_rank_zero("run", self._open)
        self.client: Any = None
        self._params: MLFlowLogger | None = None
        self._recorder: tracking.RunRecorder | None = None
        if self.is_zero:
            # A tracking server that goes away mid-run: writes wait in the run folder.
            self.client = tracking.install_offline(
                self.logger, start.uri, self.run_id, start.run_dir
            )
            # Parameters are written at once (a conflicting value fails here, not in a log).
            self._params = MLFlowLogger(tracking_uri=start.uri, run_id=self.run_id)

    def _open(self) -> str:
        """Rank 0: the experiment, and a logger of a new run or of the resumed one."""
        start = self.start
        self.experiment_id = tracking.ensure_experiment(
            start.uri, self.cfg.mlflow.experiment_name, start.artifacts
        )
        if start.resume is not None:
            self.logger = run_logger(start.uri, run_id=start.resume.run_id)
        else:
            self.logger = _new_run_logger(self.cfg, start)
        return str(self.logger.run_id)

    def __enter__(self) -> MlflowSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        """On an exception: KILLED for a stop signal (tagged), FAILED for anything else."""
        if err is None:
            return False
        self.signal_name = self._signal_of(err)
        if isinstance(err, KeyboardInterrupt):  # outside fit: Lightning did not see it
            stops.release_interrupted(err)
        if self.is_zero:
            if self.signal_name is not None:
                self.client.set_tag(self.run_id, stopping.TAG, f"signal:{self.signal_name}")
            self.client.set_terminated(
                self.run_id, "FAILED" if self.signal_name is None else "KILLED"
            )
        return False

    def record_start(self, task: Task) -> None:
        """Rank 0: the run's record, and its config (a new run) or this resume's changes."""
        if not self.is_zero:
            return
        start, resume = self.start, self.start.resume
        self._recorder = tracking.RunRecorder.start(
            self.cfg, start.uri, self.run_id, task, resumed=resume is not None
        )
        if resume is None:
            # Flattened with Hydra's `.` (Lightning's own would use `/`), as tags are.
            record_config(self._params, self.client, self.run_id, start.config, tracking.flatten)
        else:
            self._record_resume(resume)

    def _record_resume(self, resume: ResumePoint) -> None:
        changes = self.start.changes
        number = record_resume(self.client, resume, self.start.config, changes)
        log.info(
            "resume %d of run %s from %s (iteration %d); changed: %s",
            number,
            self.run_id,
            resume.checkpoint,
            resume.iteration,
            ", ".join(changes) or "nothing",
        )

    def record_params(self, trainer: pl.Trainer, workers: Callable[[pl.Trainer], int]) -> None:
        """Rank 0 of a new run: the parameters only the Trainer knows (devices, workers)."""
        if self.is_zero and self.start.resume is None and self._params is not None:
            params = launch.run_params(trainer, self.cfg.trainer.batch_size, workers(trainer))
            self._params.log_hyperparams(params)

    def finish(self, trainer: pl.Trainer, why: stopping.Stop) -> None:
        """Rank 0, after a fit that ended normally: why it stopped, checkpoints, the model."""
        if not self.is_zero:
            return
        if self.logger not in trainer.loggers:
            # fast_dev_run trains with a stand-in logger; the MLflow run is ended here.
            self.logger.finalize("success")
        checkpoint_dir = self.start.checkpoint_dir
        self.client.set_tag(self.run_id, stopping.TAG, why.tag)
        self.client.log_artifacts(self.run_id, str(checkpoint_dir), "checkpoints")
        load = partial(RunModule.from_checkpoint, trust=True)
        tracking.finish_model(self.client, self._recorder, checkpoint_dir, load)

    def waiting_note(self) -> str:
        """What still waits to reach a tracking server that went away ("" when nothing)."""
        return tracking.waiting_note(self.client)

    def ui_url(self) -> str:
        """Where the MLflow UI shows the run."""
        return tracking.ui_url(self.experiment_id, self.run_id)
