"""Train and validate datasets opened from a datasplit config."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.data.array import PAD_MODES, Array
from dacapo_hydra.data.array_spec import build_array
from dacapo_hydra.data.layout import layout_datasets
from dacapo_hydra.data.normalize import Normalizer
from dacapo_hydra.data.roi import Roi, as_tuple
from dacapo_hydra.data.tools.synthetic import ensure_synthetic

log = logging.getLogger(__name__)

STRATEGIES = ("uniform", "reject", "integral_mask", "points")


@dataclass(frozen=True)
class Sampling:
    """How crop positions are drawn (DaCapo's names).

    Attributes:
        strategy: `uniform`; `reject` (redraw until the mask covers at least
            `min_masked` of the crop); `integral_mask` (the crop's centre voxel is
            masked in); `points` (the crop holds one of the dataset's sample points).
        min_masked: fraction of masked-in voxels `reject` asks for.
        max_tries: draws before giving up on a dataset.

    """

    strategy: str = "uniform"
    min_masked: float = 0.5
    max_tries: int = 100

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"datasplit.sampling.strategy must be one of {STRATEGIES}, got {self.strategy!r}"
            )
        if not 0 <= self.min_masked <= 1:
            raise ValueError(
                f"datasplit.sampling.min_masked must lie in [0, 1], got {self.min_masked}"
            )
        if self.max_tries < 1:
            raise ValueError(f"datasplit.sampling.max_tries must be >= 1, got {self.max_tries}")


@dataclass
class Dataset:
    """One volume: raw, ground truth, an optional annotation mask, a sampling weight.

    `sample_points` are world positions (nm), for the `points` strategy.
    `allow_empty` marks a training dataset meant to hold no object (negative
    examples), which the data checks (:mod:`dacapo_hydra.data.checks`) would
    otherwise refuse.
    """

    name: str
    raw: Array
    gt: Array
    mask: Array | None
    weight: float
    sample_points: list[tuple[float, ...]] | None = None
    allow_empty: bool = False

    @property
    def labelled_roi(self) -> Roi:
        """Where ground truth (and mask, if any) exist."""
        roi = self.gt.roi
        return roi.intersect(self.mask.roi) if self.mask is not None else roi


@dataclass
class DataSplit:
    """The datasets a run trains and validates on, how raw is normalised and padded.

    `normalize` maps raw to network input (`split.normalize(raw)`): the one
    :class:`~dacapo_hydra.data.normalize.Normalizer` training, validation and
    prediction share. Its mode `none` leaves raw as read (as float32): use that
    when the raw spec normalises itself with a `normalize` transform.
    """

    dims: int
    train: list[Dataset]
    validate: list[Dataset]
    normalize: Normalizer
    pad_mode: str
    sampling: Sampling = field(default_factory=Sampling)

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

    @classmethod
    def from_config(
        cls, cfg: DictConfig | dict[str, Any], normalizer: Normalizer | None = None
    ) -> DataSplit:
        """Open every array named in `cfg` (a `datasplit` node) and check they fit together.

        The synthetic container, if the config names one, is generated first when
        missing; a `layout` folder adds its datasets to those listed. Raises
        ValueError/FileNotFoundError/KeyError naming the dataset and key at fault.
        What the arrays hold (missing or corrupt chunks, NaN, empty labels) is
        checked by :func:`dacapo_hydra.data.checks.check_split`, once the
        network's reach is known.

        Args:
            cfg: the `datasplit` node.
            normalizer: the normalisation to use, e.g. a checkpoint's
                (`ModelSpec.normalizer`); None measures it as
                `cfg.normalize` asks, on a sample of the training raw.

        """
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        dims = int(cfg["dims"])
        if cfg.get("synthetic"):
            ensure_synthetic(**_synthetic_kwargs(cfg["synthetic"]))
        train_cfg, validate_cfg = _dataset_configs(cfg)
        pad_mode = cfg.get("pad_mode", "reflect")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"datasplit.pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        sampling = Sampling(**(cfg.get("sampling") or {}))
        scales = {
            "raw": _voxel_size(cfg.get("input_voxel_size"), "datasplit.input_voxel_size"),
            "gt": _voxel_size(cfg.get("output_voxel_size"), "datasplit.output_voxel_size"),
        }
        train = [_open(d, f"datasplit.train[{i}]", dims, scales) for i, d in enumerate(train_cfg)]
        validate = [
            _open(d, f"datasplit.validate[{i}]", dims, scales) for i, d in enumerate(validate_cfg)
        ]
        _check_together(train, validate, sampling)
        if normalizer is None:
            normalizer = Normalizer.from_config(
                cfg.get("normalize", {}),
                {f"{key} ({ds.name})": ds.raw for key, ds in _keyed(train, [])},
            )
        return cls(dims, train, validate, normalizer, pad_mode, sampling)


def _dataset_configs(cfg: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The training and validation dataset nodes: those listed, then the layout's."""
    train_cfg = list(cfg.get("train") or [])
    validate_cfg = list(cfg.get("validate") or [])
    if cfg.get("layout"):
        found = layout_datasets(cfg["layout"])
        train_cfg += found["train"]
        validate_cfg += found["validate"]
    if not train_cfg:
        raise ValueError(
            "datasplit.train is empty: list at least one training dataset (or a layout)"
        )
    return train_cfg, validate_cfg


def _check_together(train: list[Dataset], validate: list[Dataset], sampling: Sampling) -> None:
    """Refuse datasets whose voxel sizes or channels differ, or that the sampling cannot use."""
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
    if sampling.strategy == "points":
        for key, ds in _keyed(train, []):
            if not ds.sample_points:
                raise ValueError(
                    f"{key} ({ds.name}): sampling strategy 'points' needs sample_points"
                )
    if sampling.strategy in ("reject", "integral_mask"):
        for key, ds in _keyed(train, []):
            if ds.mask is None:
                raise ValueError(
                    f"{key} ({ds.name}): sampling strategy {sampling.strategy!r} needs a mask"
                )


def _voxel_size(value: Any, key: str) -> tuple[float, ...] | None:
    return None if value is None else as_tuple(value, key)


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
        "kind": cfg.get("kind", "em"),
        "cell_diameter": cfg.get("cell_diameter"),
        "test": bool(cfg.get("test", False)),
    }


def _divides(a: Sequence[float], b: Sequence[float]) -> bool:
    for x, y in zip(a, b, strict=True):
        ratio = max(x, y) / min(x, y)
        if abs(ratio - round(ratio)) > 1e-6:
            return False
    return True


def _open(
    cfg: dict[str, Any], key: str, dims: int, scales: dict[str, tuple[float, ...] | None]
) -> Dataset:
    name = cfg.get("name") or key
    for part in ("raw", "gt"):
        if not cfg.get(part):
            raise ValueError(f"{key}.{part} is missing")
    raw = build_array(cfg["raw"], f"{key}.raw", scales["raw"])
    gt = build_array(cfg["gt"], f"{key}.gt", scales["gt"])
    mask = build_array(cfg["mask"], f"{key}.mask", scales["gt"]) if cfg.get("mask") else None
    for part, array in (("raw", raw), ("gt", gt), ("mask", mask)):
        if array is not None and array.dims != dims:
            raise ValueError(
                f"{key}.{part} ({array.where}) has {array.dims} spatial axes; "
                f"datasplit.dims is {dims}"
            )
    if not _divides(raw.voxel_size, gt.voxel_size):
        raise ValueError(
            f"{key}: raw voxel size {raw.voxel_size} ({raw.where}) and gt voxel size "
            f"{gt.voxel_size} ({gt.where}) do not divide: one must be an integer multiple "
            "of the other on every axis"
        )
    if mask is not None and (mask.voxel_size != gt.voxel_size or mask.roi != gt.roi):
        raise ValueError(
            f"{key}.mask ({mask.where}) covers {mask.roi} at {mask.voxel_size} nm; "
            f"expected the gt's {gt.roi} at {gt.voxel_size} nm (the same shape)"
        )
    if gt.roi.intersect(raw.roi).empty():
        raise ValueError(f"{key}: gt {gt.roi} and raw {raw.roi} do not overlap")
    weight = float(cfg.get("weight", 1.0))
    if weight <= 0:
        raise ValueError(f"{key}.weight must be positive, got {weight}")
    allow_empty = cfg.get("allow_empty") or False
    if not isinstance(allow_empty, bool):
        raise ValueError(f"{key}.allow_empty must be true or false, got {allow_empty!r}")
    points = None
    if cfg.get("sample_points"):
        points = [
            as_tuple(p, f"{key}.sample_points[{i}]") for i, p in enumerate(cfg["sample_points"])
        ]
        for i, p in enumerate(points):
            inside = len(p) == dims and all(
                b <= x < e for x, b, e in zip(p, gt.roi.begin, gt.roi.end, strict=True)
            )
            if not inside:
                raise ValueError(
                    f"{key}.sample_points[{i}] {list(p)} is not a {dims}-D point inside the "
                    f"gt's {gt.roi} ({gt.where})"
                )
    return Dataset(name, raw, gt, mask, weight, points, allow_empty)
