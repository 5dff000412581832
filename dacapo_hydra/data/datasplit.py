"""Train and validate datasets opened from a datasplit config."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.data.array import PAD_MODES, ZarrArray
from dacapo_hydra.data.roi import Roi
from dacapo_hydra.data.synthetic import ensure_synthetic

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """One volume: raw, ground truth, an optional annotation mask, a sampling weight."""

    name: str
    raw: ZarrArray
    gt: ZarrArray
    mask: ZarrArray | None
    weight: float

    @property
    def labelled_roi(self) -> Roi:
        """Where ground truth (and mask, if any) exist."""
        roi = self.gt.roi
        return roi.intersect(self.mask.roi) if self.mask is not None else roi


@dataclass
class DataSplit:
    """The datasets a run trains and validates on, and how raw is normalised."""

    dims: int
    train: list[Dataset]
    validate: list[Dataset]
    norm_min: float
    norm_max: float
    pad_mode: str

    @property
    def voxel_size(self) -> tuple[float, ...]:
        """Raw voxel size (nm), the same for every dataset."""
        return self.train[0].raw.voxel_size

    @property
    def gt_voxel_size(self) -> tuple[float, ...]:
        """Ground-truth voxel size (nm), the same for every dataset."""
        return self.train[0].gt.voxel_size

    @property
    def in_channels(self) -> int:
        """Raw channels (1 for a raw array without a channel axis)."""
        return self.train[0].raw.num_channels or 1

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """Map raw intensities linearly from [min, max] to [0, 1] (float32)."""
        return ((raw.astype(np.float32) - self.norm_min) / (self.norm_max - self.norm_min)).astype(
            np.float32
        )

    @classmethod
    def from_config(cls, cfg: DictConfig | dict[str, Any]) -> DataSplit:
        """Open every array named in `cfg` (a `datasplit` node) and check they fit together.

        The synthetic container, if the config names one, is generated first when
        missing. Raises ValueError/FileNotFoundError/KeyError naming the dataset and
        key at fault.
        """
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        dims = int(cfg["dims"])
        if cfg.get("synthetic"):
            ensure_synthetic(**_synthetic_kwargs(cfg["synthetic"]))
        if not cfg.get("train"):
            raise ValueError("datasplit.train is empty: list at least one training dataset")
        pad_mode = cfg.get("pad_mode", "reflect")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"datasplit.pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        norm = cfg.get("normalize") or {}
        lo, hi = float(norm.get("min", 0.0)), float(norm.get("max", 255.0))
        if hi <= lo:
            raise ValueError(f"datasplit.normalize: max ({hi}) must exceed min ({lo})")
        train = [_open(d, f"datasplit.train[{i}]", dims) for i, d in enumerate(cfg["train"])]
        validate = [
            _open(d, f"datasplit.validate[{i}]", dims)
            for i, d in enumerate(cfg.get("validate") or [])
        ]
        first = train[0]
        for key, ds in _keyed(train, validate):
            if ds.raw.voxel_size != first.raw.voxel_size or ds.gt.voxel_size != first.gt.voxel_size:
                raise ValueError(
                    f"{key} ({ds.name}): voxel sizes raw {ds.raw.voxel_size} / gt "
                    f"{ds.gt.voxel_size} differ from the first training dataset's "
                    f"{first.raw.voxel_size} / {first.gt.voxel_size}"
                )
            if (ds.raw.num_channels or 1) != (first.raw.num_channels or 1):
                raise ValueError(f"{key} ({ds.name}): raw channels differ from the first dataset's")
        return cls(dims, train, validate, lo, hi, pad_mode)


def _keyed(train: list[Dataset], validate: list[Dataset]) -> list[tuple[str, Dataset]]:
    return [(f"datasplit.train[{i}]", d) for i, d in enumerate(train)] + [
        (f"datasplit.validate[{i}]", d) for i, d in enumerate(validate)
    ]


def _synthetic_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": cfg["container"],
        "dims": cfg.get("dims", 3),
        "shape": cfg.get("shape"),
        "voxel_size": cfg.get("voxel_size"),
        "offset": cfg.get("offset"),
        "seed": cfg.get("seed", 0),
        "chunk": cfg.get("chunk", 32),
    }


def _open_array(source: dict[str, Any], key: str) -> ZarrArray:
    for field in ("container", "dataset"):
        if not source.get(field):
            raise ValueError(f"{key}.{field} is missing")
    try:
        return ZarrArray.open(
            source["container"],
            source["dataset"],
            voxel_size=source.get("voxel_size"),
            offset=source.get("offset"),
        )
    except (FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise type(err)(f"{key}: {message}") from None


def _open(cfg: dict[str, Any], key: str, dims: int) -> Dataset:
    name = cfg.get("name") or key
    raw = _open_array(cfg["raw"], f"{key}.raw")
    gt = _open_array(cfg["gt"], f"{key}.gt")
    mask = _open_array(cfg["mask"], f"{key}.mask") if cfg.get("mask") else None
    for part, array in (("raw", raw), ("gt", gt), ("mask", mask)):
        if array is not None and array.dims != dims:
            raise ValueError(
                f"{key}.{part} ({array.where}) has {array.dims} spatial axes; "
                f"datasplit.dims is {dims}"
            )
    if gt.num_channels is not None:
        raise ValueError(f"{key}.gt ({gt.where}) must be a label array without a channel axis")
    if raw.voxel_size != gt.voxel_size:
        raise ValueError(
            f"{key}: raw voxel size {raw.voxel_size} ({raw.where}) differs from gt voxel size "
            f"{gt.voxel_size} ({gt.where}); this version trains at one resolution"
        )
    if mask is not None and (mask.voxel_size != gt.voxel_size or mask.roi != gt.roi):
        raise ValueError(
            f"{key}.mask ({mask.where}) covers {mask.roi} at {mask.voxel_size} nm; "
            f"expected the gt's {gt.roi} at {gt.voxel_size} nm"
        )
    if gt.roi.intersect(raw.roi).empty():
        raise ValueError(f"{key}: gt {gt.roi} and raw {raw.roi} do not overlap")
    weight = float(cfg.get("weight", 1.0))
    if weight <= 0:
        raise ValueError(f"{key}.weight must be positive, got {weight}")
    return Dataset(name, raw, gt, mask, weight)
