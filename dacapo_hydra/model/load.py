"""A checkpoint to a :class:`~dacapo_hydra.model.trained.TrainedModel`, under the trust rules.

The file is read with `torch.load(weights_only=True)` and its stored config is data:
every `_target_` in it must be on the allow-list of :mod:`dacapo_hydra.trust` before
anything is built, unless the caller trusts the checkpoint.

A checkpoint's weights are named as a :class:`TrainedModel`'s (`architecture.*`,
`head.*`: the LightningModule that trains it names them so too, and so did every
earlier version); any other layout is refused in one line naming this version.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf

from dacapo_hydra.architectures.base import Architecture
from dacapo_hydra.model.spec import ModelSpec
from dacapo_hydra.model.trained import TrainedModel
from dacapo_hydra.tasks.base import Task
from dacapo_hydra.trust import check_stored_config

# The top-level names of a TrainedModel's state dict.
LAYOUT = ("architecture.", "head.")

_CACHE: dict[tuple[str, int, int, bool], TrainedModel] = {}


def read(
    path: str | Path, *, trust: bool = False, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """A checkpoint's weights (in the TrainedModel layout) and spec; builds nothing.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a dacapo-hydra checkpoint, weights in a layout this version
            does not read, or (:class:`~dacapo_hydra.trust.UntrustedCheckpoint`) a
            target off the allow-list.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    stored = state.get("hyper_parameters", {}) if isinstance(state, dict) else {}
    if not trust and "config" in stored and "meta" in stored:
        check_stored_config(stored, path)
    spec = ModelSpec.from_hparams(stored, str(path))
    return check_layout(state.get("state_dict") or {}, str(path)), spec


def check_layout(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The weights, if laid out as a TrainedModel's (`architecture.*`, `head.*`).

    Raises:
        ValueError: another layout (or none), in one line naming this version.

    """
    wrong = [n for n in state_dict if not n.startswith(LAYOUT)]
    if wrong or not state_dict:
        from dacapo_hydra import __version__

        first = repr(wrong[0]) if wrong else "nothing"
        raise ValueError(
            f"{source}: its weights are named {first}, not as dacapo-hydra {__version__} "
            f"names them ({', '.join(p + '*' for p in LAYOUT)})"
        )
    return dict(state_dict)


def build_parts(spec: ModelSpec) -> tuple[Architecture, Task]:
    """The architecture and task a spec's stored config names, built for its data facts."""
    config = OmegaConf.create(dict(spec.config))
    architecture = hydra.utils.instantiate(
        config.architecture, dims=spec.dims, in_channels=spec.in_channels
    )
    task = hydra.utils.instantiate(
        config.task,
        dims=spec.dims,
        voxel_size=list(spec.gt_voxel_size),
        object_radius=spec.object_radius,
    )
    return architecture, task


def load(
    checkpoint: str | Path, *, trust: bool = False, map_location: str | torch.device = "cpu"
) -> TrainedModel:
    """Rebuild a trained model from a checkpoint alone (no data is opened), in eval mode.

    Args:
        checkpoint: the checkpoint.
        trust: build whatever its config names (it runs code, like any Python you
            run): for checkpoints made with your own classes.
        map_location: the device the model is loaded onto.

    Raises:
        FileNotFoundError, ValueError: as :func:`read`.

    Example:
        >>> load("missing.ckpt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: checkpoint 'missing.ckpt' does not exist

    """
    weights, spec = read(checkpoint, trust=trust, map_location=map_location)
    model = TrainedModel(*build_parts(spec), spec)
    model.load_state_dict(weights)
    return model.to(map_location).eval()


def load_cached(checkpoint: str | Path, *, trust: bool = False) -> TrainedModel:
    """:func:`load`, once per process and file, on the GPU if there is one.

    Each Dask worker loads once. A model loaded with trust never answers a load
    without it; a rewritten file reloads.
    """
    path = Path(checkpoint).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, trust)
    if key not in _CACHE:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _CACHE[key] = load(path, trust=trust).to(device).eval()
    return _CACHE[key]


def cached_models() -> int:
    """How many models this process holds in its cache."""
    return len(_CACHE)


def stored_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A raw checkpoint dict's stored `(config, meta)`, as plain dicts (empty if absent)."""
    hparams = state.get("hyper_parameters") or {}
    return dict(hparams.get("config") or {}), dict(hparams.get("meta") or {})
