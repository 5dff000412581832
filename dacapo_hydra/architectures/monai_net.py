"""MONAI's networks (BasicUNet, UNet, SwinUNETR, ...) behind the architecture interface.

They pad ('same'), so the output has the input's shape and the context is 0: the
data side reads no extra raw around a crop, and prediction overlaps blocks
instead. Which input sizes a network accepts (multiples of its total stride,
mostly) is found by trial on the meta device; `divisor` states it up front.
"""

from __future__ import annotations

import inspect
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from dacapo_hydra.architectures.base import per_axis
from dacapo_hydra.architectures.traced import TracedArchitecture


def network_target(network: Any, name: str) -> tuple[dict[str, Any], Any]:
    """The network node as a (new) plain dict, and the class or factory its `_target_` names.

    Raises:
        ValueError: if the node has no `_target_` or it names nothing importable.

    """
    if isinstance(network, DictConfig):
        network = OmegaConf.to_container(network, resolve=True)
    elif isinstance(network, dict):
        network = dict(network)
    if not isinstance(network, dict) or "_target_" not in network:
        raise ValueError(
            f"{name} must be a mapping with a _target_ naming the network class "
            f"(e.g. monai.networks.nets.BasicUNet), got {network!r}"
        )
    try:
        cls = hydra.utils.get_object(network["_target_"])
    except Exception as err:
        raise ValueError(f"{name}._target_={network['_target_']!r}: {err}") from None
    return network, cls


class MonaiNetwork(TracedArchitecture):
    """A MONAI network (any class taking `spatial_dims`, `in_channels`, `out_channels`).

    Args:
        network: `_target_` (e.g. `monai.networks.nets.BasicUNet`) and the network's
            own arguments; `spatial_dims`, `in_channels` and `out_channels` (and
            `img_size` where it takes one) are filled in.
        input_shape: training input shape in voxels (int: same on every axis).
        dims: spatial dimensions (2 or 3), from the datasplit.
        in_channels: raw channels, from the datasplit.
        fmaps_out: feature maps out (the run adds a 1x1 head for the task).
        eval_input_shape: larger input for prediction (default `input_shape`).
        divisor: input sizes must be multiples of this (int or per axis); e.g. 16
            for a BasicUNet, 32 for a SwinUNETR. Trial passes confirm the rest.
        trainable: regex of parameter names to train; the rest are frozen.

    """

    def __init__(
        self,
        network: Any,
        input_shape: Any,
        dims: int = 3,
        in_channels: int = 1,
        fmaps_out: int = 12,
        eval_input_shape: Any = None,
        divisor: Any = None,
        trainable: str | None = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"architecture: dims must be 2 or 3, got {dims}")
        if fmaps_out < 1:
            raise ValueError(f"architecture.fmaps_out must be >= 1, got {fmaps_out}")
        self.dims = dims
        self.in_channels = in_channels
        kwargs, cls = network_target(network, "architecture.network")
        kwargs.pop("_target_")
        params = inspect.signature(cls).parameters
        filled = {"spatial_dims": dims, "in_channels": in_channels, "out_channels": fmaps_out}
        if "img_size" in params:
            filled["img_size"] = per_axis(input_shape, dims, "architecture.input_shape")
        for key in filled:
            if key in kwargs:
                raise ValueError(
                    f"architecture.network.{key} is set from the data and fmaps_out; remove it"
                )
        missing = [k for k in ("in_channels", "out_channels") if k not in params]
        if missing:
            raise ValueError(
                f"architecture.network._target_={cls.__module__}.{cls.__qualname__} takes no "
                f"{' or '.join(missing)}; wrap it with the `module` architecture instead"
            )
        try:
            self.network = cls(**{k: v for k, v in filled.items() if k in params}, **kwargs)
        except (TypeError, ValueError, AssertionError) as err:
            raise ValueError(f"architecture.network ({cls.__qualname__}): {err}") from None
        self._setup_shapes(input_shape, eval_input_shape, divisor, same_padding=True)
        self.set_trainable(trainable)
