"""The LightningModule: an architecture, a task head, the task's loss, an optimiser.

A trained module comes back from its checkpoint alone with
:meth:`RunModule.from_checkpoint` (what prediction, export and MLflow models load);
this module imports nothing of training's run, callbacks or validation, so
inference can load a model without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn

from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.trust import check_stored_config

log = logging.getLogger(__name__)


class RunModule(pl.LightningModule):
    """Network = architecture + 1x1 head with the task's channels; loss from the task.

    Args:
        architecture: the backbone network.
        task: supplies the head's channels, the loss and the inference activation.
        optimizer: a partial optimiser taking the parameters.
        scheduler: a partial LR scheduler taking the optimiser (stepped every iteration).
        config: the composed run config (plain containers), stored in checkpoints.
        meta: data facts the network is built for (dims, in_channels, voxel sizes),
            stored in checkpoints so a model can be rebuilt without its data.

    """

    def __init__(
        self,
        architecture: Architecture,
        task: Task,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        config: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        conv = nn.Conv3d if architecture.dims == 3 else nn.Conv2d
        self.head = conv(architecture.out_channels, task.num_channels, kernel_size=1)
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.save_hyperparameters({"config": config or {}, "meta": meta or {}}, logger=False)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        trust: bool = False,
        map_location: str | torch.device = "cpu",
    ) -> RunModule:
        """Rebuild a trained module from a checkpoint alone (no data is opened), in eval mode.

        The checkpoint holds the composed config and the data facts the network was
        built for (dims, channels, voxel sizes, and the raw normalisation in
        `meta["normalize"]`); the weights are loaded strictly. A checkpoint from
        before the normalisation was stored gets its config's min/max there
        (:meth:`Normalizer.from_hparams`), so every reader finds `meta["normalize"]`.

        The file is read with `torch.load(weights_only=True)` and its stored config is
        data: every `_target_` in it must be on the allow-list of
        :mod:`dacapo_hydra.trust` before anything is built.

        Args:
            path: the checkpoint.
            trust: build whatever its config names (it runs code, like any Python
                you run): for checkpoints made with your own classes.
            map_location: the device the module is loaded onto.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a dacapo-hydra checkpoint, or
                (:class:`~dacapo_hydra.trust.UntrustedCheckpoint`) a target off the allow-list.

        Example:
            >>> RunModule.from_checkpoint("missing.ckpt")
            Traceback (most recent call last):
            ...
            FileNotFoundError: checkpoint 'missing.ckpt' does not exist

        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
        state = torch.load(path, map_location=map_location, weights_only=True)
        hparams = state.get("hyper_parameters", {}) if isinstance(state, dict) else {}
        if "config" not in hparams or "meta" not in hparams:
            raise ValueError(
                f"{path} is not a dacapo-hydra checkpoint (no config/meta hyper-parameters)"
            )
        if not trust:
            check_stored_config(hparams, path)
        cfg = OmegaConf.create(hparams["config"])
        meta = dict(hparams["meta"])
        if "normalize" not in meta:
            meta["normalize"] = Normalizer.from_hparams(hparams).to_dict()
            log.info("%s stores no normalisation: using its config's %s", path, meta["normalize"])
        architecture = hydra.utils.instantiate(
            cfg.architecture, dims=meta["dims"], in_channels=meta["in_channels"]
        )
        task = hydra.utils.instantiate(
            cfg.task,
            dims=meta["dims"],
            voxel_size=meta["gt_voxel_size"],
            object_radius=meta.get("object_radius"),
        )
        optimizer = hydra.utils.instantiate(cfg.trainer.optimizer)
        module = cls(architecture, task, optimizer, None, config=hparams["config"], meta=meta)
        module.load_state_dict(state["state_dict"])
        return module.to(map_location).eval()

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device | None = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        *,
        trust: bool = False,
        **kwargs: Any,
    ) -> RunModule:
        """Lightning's loader, routed to :meth:`from_checkpoint` (same trust rules).

        Lightning's own would call `RunModule(**hparams)`, but a checkpoint stores
        the config and data facts, not the built architecture, task and optimiser;
        :meth:`from_checkpoint` builds those (checking every `_target_` first) and
        loads the weights strictly. The module comes back in eval mode.

        Args:
            checkpoint_path: the checkpoint.
            map_location: a device (default: the CPU).
            hparams_file: not supported: the checkpoint holds its config.
            strict: True or None (weights always load strictly).
            trust: as :meth:`from_checkpoint`.
            **kwargs: not supported (Lightning would pass them to `__init__`).

        Raises:
            FileNotFoundError, ValueError: as :meth:`from_checkpoint`; an argument this
                loader cannot honour, in one line.

        Example:
            >>> RunModule.load_from_checkpoint("m.ckpt", hparams_file="h.yaml")
            Traceback (most recent call last):
            ...
            ValueError: RunModule.load_from_checkpoint: hparams_file is not supported (the checkpoint holds its config); use RunModule.from_checkpoint(path, trust=..., map_location=...)

        """  # noqa: E501
        unsupported = [
            name
            for name, given in (
                ("hparams_file", hparams_file is not None),
                ("strict=False", strict is False),
                (
                    "a map_location that is not a device",
                    not isinstance(map_location, str | torch.device | None),
                ),
            )
            if given
        ] + [f"{k}=" for k in kwargs]
        if unsupported:
            raise ValueError(
                f"RunModule.load_from_checkpoint: {', '.join(unsupported)} is not supported "
                "(the checkpoint holds its config); use "
                "RunModule.from_checkpoint(path, trust=..., map_location=...)"
            )
        return cls.from_checkpoint(checkpoint_path, trust=trust, map_location=map_location or "cpu")

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw network output (logits or linear values) for a raw batch."""
        return self.head(self.architecture(raw))

    def predict(self, raw: torch.Tensor) -> torch.Tensor:
        """Network output mapped by the task's activation."""
        return self.task.activation(self(raw))

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.loss(self(batch["raw"]), batch["target"], batch["weight"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimiser step's loss, logged as `train/loss` where Lightning writes logs.

        Lightning sends step metrics to the loggers every `log_every_n_steps` only, but
        `self.log` costs on every step (and on a GPU its value is read back when the
        progress bar shows it): the loss is logged on the steps whose metrics are
        written, and on the last one, so `train/loss` in `trainer.callback_metrics` is
        the final loss and the logged series is unchanged.
        """
        loss = self._loss(batch)
        if self._logs_this_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=batch["raw"].shape[0])
        return loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this step's metrics, or it is the last step."""
        trainer = self.trainer
        last = 0 <= trainer.max_steps <= self.global_step + 1
        # The test Lightning's own LearningRateMonitor uses to log only on these steps.
        return bool(trainer.fast_dev_run) or last or trainer._logger_connector.should_update_logs

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Loss on the fixed validation crops, logged as `val/loss` (averaged over DDP ranks)."""
        loss = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["raw"].shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self) -> Any:
        """The configured optimiser, and its per-iteration schedule if any."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }
