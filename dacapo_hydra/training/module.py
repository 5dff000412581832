"""The LightningModule: a :class:`~dacapo_hydra.model.trained.TrainedModel`, its loss, an optimiser.

The trained network itself (architecture, head, activation) is
:class:`~dacapo_hydra.model.trained.TrainedModel`, which validation, prediction and
export load alone (:func:`dacapo_hydra.model.load.load`); this module adds what
training needs around it. Its state dict (and so its checkpoints) names the weights
as the TrainedModel does (`architecture.*`, `head.*`, not `model.architecture.*`), so
a checkpoint reads the same from either, and those from before the TrainedModel too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn

from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.model.load import LAYOUT, build_parts, read
from dacapo_hydra.model.spec import ModelSpec
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.tasks.base import Task

# The attribute holding the TrainedModel: the prefix its weights' names lose.
WRAPPER_PREFIX = "model."


class RunModule(pl.LightningModule):
    """A :class:`TrainedModel` (`self.model`) with the task's loss and an optimiser.

    Args:
        architecture: the backbone network.
        task: supplies the head's channels, the loss and the inference activation.
        optimizer: a partial optimiser taking the parameters.
        scheduler: a partial LR scheduler taking the optimiser (stepped every iteration).
        config: the composed run config (plain containers), stored in checkpoints.
        meta: data facts the network is built for (dims, in_channels, voxel sizes,
            normalisation), stored in checkpoints so a model can be rebuilt without
            its data.

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
        stored = {"config": config or {}, "meta": meta or {}}
        self.model = TrainedModel(architecture, task, ModelSpec.from_hparams(stored, "RunModule"))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.save_hyperparameters(self.model.spec.hparams, logger=False)
        # Weights are named as the TrainedModel names them, in memory and in checkpoints.
        self.register_state_dict_post_hook(_unwrap_names)
        self.register_load_state_dict_pre_hook(_wrap_names)

    @property
    def architecture(self) -> Architecture:
        """The backbone network."""
        return self.model.architecture

    @property
    def head(self) -> torch.nn.Module:
        """The 1x1 convolution to the task's channels."""
        return self.model.head

    @property
    def task(self) -> Task:
        """The task: loss, activation, post-processing."""
        return self.model.task

    @property
    def spec(self) -> ModelSpec:
        """The facts the network was built for."""
        return self.model.spec

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        trust: bool = False,
        map_location: str | torch.device = "cpu",
    ) -> RunModule:
        """Rebuild a trained module from a checkpoint alone (no data is opened), in eval mode.

        The checkpoint is read as :func:`dacapo_hydra.model.load.load` reads it (the
        same trust rules; the weights load strictly); the optimiser is the stored
        config's. For prediction or export, load the
        :class:`~dacapo_hydra.model.trained.TrainedModel` alone instead.

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
        weights, spec = read(path, trust=trust, map_location=map_location)
        architecture, task = build_parts(spec)
        optimizer = hydra.utils.instantiate(OmegaConf.create(dict(spec.config)).trainer.optimizer)
        module = cls(architecture, task, optimizer, None, dict(spec.config), dict(spec.meta))
        module.model.load_state_dict(weights)
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
        return self.model.logits(raw)

    def predict(self, raw: torch.Tensor) -> torch.Tensor:
        """Network output mapped by the task's activation."""
        return self.model(raw)

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
        # Lightning's own rule for the steps whose metrics it writes (public attributes).
        written = (self.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0
        return bool(trainer.fast_dev_run) or last or written or trainer.should_stop

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


def _unwrap_names(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    """State-dict hook: `model.architecture.*` becomes `architecture.*` (same for `head.*`)."""
    inner = prefix + WRAPPER_PREFIX
    for name in [n for n in state_dict if n.startswith(inner)]:
        state_dict[prefix + name[len(inner) :]] = state_dict.pop(name)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        for name in [n for n in metadata if n.startswith(inner)]:
            metadata[prefix + name[len(inner) :]] = metadata.pop(name)


def _wrap_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load hook: the inverse of :func:`_unwrap_names`, for the TrainedModel's names."""
    for name in [n for n in state_dict if n.startswith(tuple(prefix + p for p in LAYOUT))]:
        state_dict[prefix + WRAPPER_PREFIX + name[len(prefix) :]] = state_dict.pop(name)
