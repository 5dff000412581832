"""Schemas of the `architecture` group, one per kind of network, made from its constructor.

Each schema is hydra-zen's `builds(<class>, populate_full_signature=True)`: every
parameter of the network's constructor is a field, with the constructor's default
(required ones `???`) and its type where OmegaConf can check one, so a parameter is
written in its constructor and its YAML only, and a typo or a value of the wrong type
fails at composition, naming the key. What the run passes itself (`dims`,
`in_channels`) is left out. Shapes and factors are typed `Any` in the constructors: an
int (the same on every axis) or a per-axis list, checked by the architecture when it
is built (with the nearest valid shapes in the message when a shape can't work).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from hydra_zen import BuildsFn

from dacapo_hydra.architectures.cnnectome_unet import CNNectomeUNet
from dacapo_hydra.architectures.monai_net import MonaiNetwork
from dacapo_hydra.architectures.wrapped import WrappedModule

# Constructor parameters the run fills in from the data (never written in a config).
FROM_THE_RUN = ("dims", "in_channels")


class _Builds(BuildsFn[Any]):
    """hydra-zen's `builds`, reading `X | None` as `Optional[X]`, which OmegaConf checks.

    hydra-zen refines `typing.Union` annotations only; the constructors write
    Python 3.10 unions, which it would widen to `Any`.
    """

    @classmethod
    def _sanitized_type(cls, type_: Any, **kwargs: Any) -> Any:
        if isinstance(type_, types.UnionType):
            type_ = typing.Union[typing.get_args(type_)]  # noqa: UP007
        return super()._sanitized_type(type_, **kwargs)


def constructor_schema(
    target: type,
    name: str,
    doc: str,
    recursive: bool = True,
    exclude: Sequence[str] = FROM_THE_RUN,
) -> Any:
    """The schema of `target`: a dataclass of its constructor's parameters but `exclude`.

    `recursive=False` keeps nested `_target_` nodes (a MONAI network, a module) as
    config for the constructor to check and build, instead of Hydra building them.
    `exclude`: what the run passes itself (for a task: `dims`, `voxel_size`, ...).
    """
    schema = _Builds.builds(
        target,
        populate_full_signature=True,
        zen_exclude=tuple(exclude),
        hydra_recursive=None if recursive else False,
        zen_dataclass={"cls_name": name, "module": __name__},
    )
    schema.__doc__ = doc
    return schema


CNNectomeUNetConfig = constructor_schema(
    CNNectomeUNet,
    "CNNectomeUNetConfig",
    "DaCapo's CNNectomeUNet: valid (or same) convolutions, shapes in voxels.",
)
MonaiNetworkConfig = constructor_schema(
    MonaiNetwork,
    "MonaiNetworkConfig",
    "A MONAI network: `network._target_` and its arguments ('same' padding).",
    recursive=False,
)
WrappedModuleConfig = constructor_schema(
    WrappedModule,
    "WrappedModuleConfig",
    "Any nn.Module (`module._target_`) or saved program (`path`), e.g. to fine-tune.",
    recursive=False,
)

# Options of /schema/architecture/<name>, which each YAML of the group extends.
SCHEMAS = {
    "cnnectome_unet": CNNectomeUNetConfig,
    "monai": MonaiNetworkConfig,
    "module": WrappedModuleConfig,
}
