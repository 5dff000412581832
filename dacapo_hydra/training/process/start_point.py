"""Where a run starts: its name, its MLflow store, its folder, and the run it resumes.

Rank 0 finds the run to resume (``resume``, or for a requeued SLURM job the run
that trained in its folder) and its newest intact checkpoint; every rank gets
the same :class:`Start` (:meth:`~dacapo_hydra.training.process.distributed.World.from_rank_zero`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra import tracking
from dacapo_hydra.errors import ConfigError
from dacapo_hydra.model.load import stored_state
from dacapo_hydra.training.checkpoints import newest_intact, resume_candidates
from dacapo_hydra.training.process import launch
from dacapo_hydra.training.process.distributed import World
from dacapo_hydra.training.process.resume import (
    ResumePoint,
    changed_settings,
    from_start_record,
    refuse_meaningless,
    start_record,
)
from dacapo_hydra.training.process.run_dir import new_run_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Start:
    """Where a run starts.

    Attributes:
        name: the run's name.
        choices: the config groups' choices (tags of a new run).
        uri: the MLflow tracking URI.
        artifacts: the experiment's artifact location.
        run_dir: the run's folder.
        config: the resolved config.
        resume: the run and checkpoint to continue, None for a new run.
        changes: the settings changed since the resumed run (empty for a new run).

    """

    name: str
    choices: dict[str, str]
    uri: str
    artifacts: str
    run_dir: Path
    config: dict[str, Any]
    resume: ResumePoint | None
    changes: dict[str, tuple[Any, Any]]

    @property
    def checkpoint_dir(self) -> Path:
        """The run's checkpoint folder."""
        return self.run_dir / "checkpoints"


def start_point(cfg: DictConfig, world: World, uri: str, artifacts: str) -> Start:
    """Where the run `cfg` starts; rank 0 finds the run to resume for every rank.

    Raises:
        ConfigError: no such run to resume, or settings a resume cannot change.

    """
    choices = tracking.group_choices(cfg)
    name = tracking.run_name(cfg, choices)
    resume, run_dir = world.from_rank_zero(
        "start", lambda: _resume_and_folder(cfg, uri, name), start_record, from_start_record
    )
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    changes = changed_settings(resume.config, config) if resume and resume.config else {}
    if resume is not None:
        refuse_meaningless(changes, resume.checkpoint)
    return Start(name, choices, uri, artifacts, run_dir, config, resume, changes)


def _run_dir(cfg: DictConfig, name: str) -> Path:
    """Hydra's job folder, or a fresh one of the run's own (never shared, see run_dir)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return new_run_dir(cfg.paths.output_dir, name)


def _resume_and_folder(cfg: DictConfig, uri: str, name: str) -> tuple[ResumePoint | None, Path]:
    """The run to resume (or None) and the run folder."""
    resume = _resume_point(cfg, uri, name)
    return resume, (resume.checkpoint.parent.parent if resume is not None else _run_dir(cfg, name))


def _resume_point(cfg: DictConfig, uri: str, name: str) -> ResumePoint | None:
    """The run to resume and its newest intact checkpoint, or None for a new run.

    A requeued SLURM job without `resume` continues the unfinished run that trained
    in its folder.
    """
    resume = cfg.resume
    if resume is None and launch.requeued():
        resume = launch.requeued_run(uri, cfg.mlflow.experiment_name, _run_dir(cfg, name))
        if resume is not None:
            log.info("requeued job: continuing run %s", resume)
    if resume in (None, False):
        return None
    run_id = None if resume is True else str(resume)
    found = tracking.resumable_run(uri, cfg.mlflow.experiment_name, name, run_id, resume_candidates)
    if found is None:
        if run_id is not None:
            raise ConfigError(f"resume={run_id}: no such MLflow run with a checkpoint")
        log.info("resume: no unfinished run named %s with a checkpoint; starting a new run", name)
        return None
    run_id, folder = found
    intact = newest_intact(folder)
    if intact is None:
        raise ConfigError(f"resume: no checkpoint in {folder} loads (each is named above)")
    checkpoint, state = intact
    config, meta = stored_state(state)
    return ResumePoint(
        run_id=run_id,
        checkpoint=checkpoint,
        iteration=int(state["global_step"]),
        config=config,
        meta=meta,
    )
