"""Any `nn.Module`, or a saved program, as an architecture (e.g. to fine-tune it).

The module is either built from a `_target_` (with its own arguments) or loaded
from a file: a TorchScript archive (`torch.jit.save`) or a torch.export program
(`torch.export.save`, `.pt2`). Pickled modules (`torch.save(model)`) are refused:
loading them runs arbitrary code. Output shape and channels are found by trial
(see :mod:`dacapo_hydra.architectures.traced`); `trainable` freezes the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dacapo_hydra.architectures.monai_net import network_target
from dacapo_hydra.architectures.traced import TracedArchitecture


def load_saved_module(path: str | Path) -> nn.Module:
    """Load a TorchScript archive or a torch.export program as a module (on the CPU).

    Raises:
        FileNotFoundError: if `path` is not a file.
        ValueError: if it is neither kind of file.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"architecture.path {str(path)!r} does not exist")
    errors = []
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # not TorchScript; try torch.export next
        errors.append(f"TorchScript: {str(err).splitlines()[0][:120]}")
    try:
        return torch.export.load(str(path)).module()
    except Exception as err:  # neither: report both reasons
        errors.append(f"torch.export: {str(err).splitlines()[0][:120]}")
    raise ValueError(
        f"architecture.path {str(path)!r} is neither a TorchScript archive nor a torch.export "
        f"program ({'; '.join(errors)}); for a module class, give module: {{_target_: ...}} "
        "and load its weights with `start`"
    )


class WrappedModule(TracedArchitecture):
    """A module built from `module` (a `_target_` and arguments) or loaded from `path`.

    Args:
        input_shape: training input shape in voxels (int: same on every axis).
        dims: spatial dimensions (2 or 3), from the datasplit.
        in_channels: raw channels, from the datasplit; the module must accept them.
        module: `_target_` of an `nn.Module` class and its arguments.
        path: a TorchScript archive or a torch.export program (instead of `module`).
        eval_input_shape: larger input for prediction (default `input_shape`).
        divisor: input sizes must be multiples of this (int or per axis).
        upsample_factor: output voxels per input voxel (int or per axis).
        trainable: regex of parameter names to train (e.g. `^decoder`); the rest
            are frozen.

    """

    def __init__(
        self,
        input_shape: Any,
        dims: int = 3,
        in_channels: int = 1,
        module: Any = None,
        path: str | None = None,
        eval_input_shape: Any = None,
        divisor: Any = None,
        upsample_factor: Any = 1,
        trainable: str | None = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"architecture: dims must be 2 or 3, got {dims}")
        if (module is None) == (path is None):
            raise ValueError("architecture: give exactly one of `module` (a _target_) or `path`")
        self.dims = dims
        self.in_channels = in_channels
        if path is not None:
            self.network = load_saved_module(path)
        else:
            node, _ = network_target(module, "architecture.module")
            try:
                built = hydra.utils.instantiate(
                    OmegaConf.create(node) if not isinstance(module, DictConfig) else module
                )
            except Exception as err:
                raise ValueError(f"architecture.module ({node['_target_']}): {err}") from None
            if not isinstance(built, nn.Module):
                raise ValueError(
                    f"architecture.module._target_={node['_target_']!r} built a "
                    f"{type(built).__name__}, not a torch.nn.Module"
                )
            self.network = built
        self._setup_shapes(input_shape, eval_input_shape, divisor, upsample_factor)
        self.set_trainable(trainable)
