"""What a checkpoint says about its network, read from its hyper-parameters in one place.

A checkpoint stores `hyper_parameters = {"config": <the composed run config>, "meta":
<data facts>}` (:class:`~dacapo_hydra.training.module.RunModule`). Everything else
reads those facts from a :class:`ModelSpec`, never from the dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dacapo_hydra.data.normalize import KEY, Normalizer

log = logging.getLogger(__name__)

# The padding of a block's input at the volume's edge when a config names none.
DEFAULT_PAD_MODE = "reflect"


@dataclass(frozen=True)
class ModelSpec:
    """The facts a trained network was built for, and the run config it came from.

    Attributes:
        dims: spatial axes (2 or 3).
        in_channels: raw channels the network reads.
        voxel_size: raw voxel size (nm) the network was trained on.
        gt_voxel_size: ground-truth voxel size (nm) the task's lengths are resolved in.
        object_radius: the training objects' typical radius (nm), if measured.
        normalizer: raw intensities to network input, as measured for training.
        pad_mode: padding where a block's input leaves the volume, as in training.
        config: the composed run config (plain containers).
        meta: the stored data facts, as stored (with `normalize` filled in).
        out_channels: the head's channels (known once the task is built).
        fingerprint: the data's fingerprint, when the run stored one.

    """

    dims: int
    in_channels: int
    voxel_size: tuple[float, ...]
    gt_voxel_size: tuple[float, ...]
    object_radius: float | None
    normalizer: Normalizer
    pad_mode: str
    config: Mapping[str, Any] = field(repr=False)
    meta: Mapping[str, Any] = field(repr=False)
    out_channels: int | None = None
    fingerprint: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], source: str = "the checkpoint") -> ModelSpec:
        """The spec of a checkpoint's `hyper_parameters` (or a module's `hparams`).

        A checkpoint from before the normalisation was stored gets its config's
        min/max (:func:`stored_normalizer`), so `meta["normalize"]` is always there.

        Raises:
            ValueError: not a dacapo-hydra checkpoint (no config/meta), or a fact missing.

        """
        if "config" not in hparams or "meta" not in hparams:
            raise ValueError(
                f"{source} is not a dacapo-hydra checkpoint (no config/meta hyper-parameters)"
            )
        config = _plain(hparams["config"])
        meta = _plain(hparams["meta"])
        missing = [
            k for k in ("dims", "in_channels", "voxel_size", "gt_voxel_size") if k not in meta
        ]
        if missing:
            raise ValueError(f"{source}: meta.{missing[0]} is missing from its hyper-parameters")
        normalizer = stored_normalizer(meta, config)
        if "normalize" not in meta:
            log.info("%s stores no normalisation: using its config's %s", source, normalizer)
            meta["normalize"] = normalizer.to_dict()
        datasplit = config.get("datasplit") or {}
        radius = meta.get("object_radius")
        return cls(
            dims=int(meta["dims"]),
            in_channels=int(meta["in_channels"]),
            voxel_size=tuple(float(v) for v in meta["voxel_size"]),
            gt_voxel_size=tuple(float(v) for v in meta["gt_voxel_size"]),
            object_radius=None if radius is None else float(radius),
            normalizer=normalizer,
            pad_mode=str(datasplit.get("pad_mode") or DEFAULT_PAD_MODE),
            config=config,
            meta=meta,
            fingerprint=meta.get("fingerprint"),
        )

    def with_out_channels(self, channels: int) -> ModelSpec:
        """The spec with the head's channel count filled in."""
        return replace(self, out_channels=int(channels))

    @property
    def hparams(self) -> dict[str, Any]:
        """What a checkpoint stores as `hyper_parameters` (the model's provenance hashes it)."""
        return {"config": dict(self.config), "meta": dict(self.meta)}

    @property
    def datasplit(self) -> dict[str, Any]:
        """The run's datasplit config (where its training and validation data are)."""
        return dict(self.config.get("datasplit") or {})

    @property
    def target(self) -> dict[str, str | None]:
        """The `_target_` of the stored architecture and task configs."""
        return {
            group: (self.config.get(group) or {}).get("_target_")
            for group in ("architecture", "task")
        }

    @property
    def name(self) -> str:
        """The run's name, else its group choices joined by '-' (empty if neither)."""
        return str(self.config.get("run_name") or "") or "-".join(
            str(v) for v in (self.config.get("choices") or {}).values() if v
        )


def stored_normalizer(meta: Mapping[str, Any], config: Mapping[str, Any]) -> Normalizer:
    """The normaliser a model was trained with, from its stored facts.

    `meta["normalize"]` holds the values measured when the run was built. A
    checkpoint from before those were stored falls back to its config's
    `datasplit.normalize` min/max (0 and 255 unless given), the rule of that time.
    Nothing is measured here: prediction must use the training's numbers.

    Raises:
        ValueError: if nothing is stored and the config's mode measures values.

    """
    stored = meta.get("normalize")
    if stored is not None:
        return Normalizer.from_dict(stored)
    datasplit = config.get("datasplit") or {}
    if "normalize" in datasplit and datasplit["normalize"] is None:
        return Normalizer.identity()
    node = dict(datasplit.get("normalize") or {})
    mode = node.get("mode") or "minmax"
    lo, hi = node.get("min", 0.0), node.get("max", 255.0)
    if mode == "minmax" and lo is not None and hi is not None:
        return Normalizer("minmax", float(lo), float(hi))
    if mode == "meanstd" and node.get("mean") is not None and node.get("std") is not None:
        mean = float(node["mean"])
        return Normalizer("meanstd", mean, mean + float(node["std"]))
    raise ValueError(
        f"the checkpoint stores no normalisation values (meta.normalize) and its {KEY} "
        f"(mode {mode!r}) measures them on training data: re-train, or predict with a "
        "checkpoint written by this version"
    )


def _plain(value: Any) -> dict[str, Any]:
    """A stored mapping (a dict, or Lightning's AttributeDict / an OmegaConf node) as a dict."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(value, DictConfig):
        return dict(OmegaConf.to_container(value, resolve=True))  # type: ignore[arg-type]
    return dict(value or {})
