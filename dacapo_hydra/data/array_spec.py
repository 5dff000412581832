"""Arrays from their YAML description: a zarr dataset, or a transform of other arrays.

A spec is a mapping. Without `type` (or with `type: zarr`) it names a zarr
dataset: `container`, `dataset`, and optionally `voxel_size`/`offset` (nm, for
files without metadata) and `scale` (the voxel size of the multiscale level to
pick). With `type: <transform>` it wraps the arrays given as `source`,
`sources`, `channels` or `like`, which are specs themselves, e.g.::

    gt:
      type: binarize
      groups: {mito: [1, 2], er: [3]}
      source: {container: data.zarr, dataset: labels}

A zarr spec may also say `sparse: true` (chunks may be missing from the store,
read as the fill value) or `sparse: false` (every chunk must exist); left out,
raw must be dense and ground truth and masks may be sparse
(:mod:`dacapo_hydra.data.checks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dacapo_hydra.data.array import Array, ZarrArray
from dacapo_hydra.data.transforms import (
    BinarizeArray,
    ConcatArray,
    ConstantArray,
    CropArray,
    LogicalOrArray,
    MergeInstancesArray,
    MissingAnnotationsMask,
    NormalizeArray,
    ResampleArray,
    SumArray,
)
from dacapo_hydra.errors import ConfigError

ZARR_KEYS = {"type", "container", "dataset", "voxel_size", "offset", "scale", "sparse"}


def _one(cls: type[Array]) -> Callable[..., Array]:
    def make(source: Array, **params: Any) -> Array:
        return cls(source, **params)

    return make


# type -> (constructor, names of its parameters that are array specs)
TRANSFORMS: dict[str, tuple[Callable[..., Array], set[str]]] = {
    "normalize": (_one(NormalizeArray), {"source"}),
    "binarize": (_one(BinarizeArray), {"source"}),
    "crop": (_one(CropArray), {"source"}),
    "logical_or": (_one(LogicalOrArray), {"source"}),
    "resample": (_one(ResampleArray), {"source"}),
    "concat": (ConcatArray, {"channels"}),
    "sum": (SumArray, {"sources"}),
    "merge_instances": (MergeInstancesArray, {"sources"}),
    "constant": (ConstantArray, {"like"}),
    "missing_annotations_mask": (MissingAnnotationsMask, {"source", "mask"}),
}


def build_array(spec: Any, key: str, scale: Sequence[float] | None = None) -> Array:
    """Open the array `spec` describes.

    Args:
        spec: a mapping, as above.
        key: where the spec sits in the config (`datasplit.train[0].gt`), for messages.
        scale: voxel size of the multiscale level to pick where the spec gives no `scale`.

    Raises:
        ValueError, KeyError, FileNotFoundError: naming `key` and what is wrong.

    """
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{key} must be a mapping (container/dataset or type/source), got {spec!r}"
        )
    kind = spec.get("type") or "zarr"
    if kind == "zarr":
        return _open_zarr(spec, key, scale)
    if kind not in TRANSFORMS:
        raise ValueError(
            f"{key}.type {kind!r} is not an array type; expected zarr or one of "
            f"{', '.join(sorted(TRANSFORMS))}"
        )
    make, array_params = TRANSFORMS[kind]
    params: dict[str, Any] = {}
    for name, value in spec.items():
        if name == "type":
            continue
        if name not in array_params:
            params[name] = value
        elif value is None:
            params[name] = None
        elif name == "sources":
            params[name] = [
                build_array(v, f"{key}.{name}[{i}]", scale) for i, v in enumerate(value)
            ]
        elif name == "channels":
            params[name] = {
                str(c): None if v is None else build_array(v, f"{key}.channels.{c}", scale)
                for c, v in value.items()
            }
        else:
            params[name] = build_array(value, f"{key}.{name}", scale)
    try:
        return make(**params)
    except TypeError as err:
        raise ValueError(f"{key} ({kind}): bad parameters {sorted(params)}: {err}") from None
    except (ValueError, KeyError) as err:
        raise _prefixed(err, key) from None


def _open_zarr(spec: Mapping[str, Any], key: str, scale: Sequence[float] | None) -> ZarrArray:
    unknown = set(spec) - ZARR_KEYS
    if unknown:
        raise ValueError(
            f"{key}: unknown keys {sorted(unknown)} for a zarr array; "
            f"expected {sorted(ZARR_KEYS - {'type'})} (or a `type` to transform)"
        )
    for field in ("container", "dataset"):
        if not spec.get(field):
            raise ValueError(f"{key}.{field} is missing")
    sparse = spec.get("sparse")
    if sparse is not None and not isinstance(sparse, bool):
        raise ValueError(f"{key}.sparse must be true, false or null, got {sparse!r}")
    try:
        return ZarrArray.open(
            spec["container"],
            spec["dataset"],
            voxel_size=spec.get("voxel_size"),
            offset=spec.get("offset"),
            scale_voxel_size=spec.get("scale") or scale,
            sparse=sparse,
        )
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise _prefixed(err, key) from None


def _prefixed(err: Exception, key: str) -> Exception:
    """`err`'s message after `key: `, as an error of its kind where one can be rebuilt.

    Our own errors, FileNotFoundError and KeyError keep their type; any other
    ValueError (a library's subclass may need more than a message to be built,
    e.g. json's JSONDecodeError) becomes a ConfigError, which is a ValueError.
    """
    message = f"{key}: {err.args[0] if err.args else err}"
    if isinstance(err, ConfigError):
        return type(err)(message)
    if isinstance(err, FileNotFoundError):
        return FileNotFoundError(message)
    if isinstance(err, KeyError):
        return KeyError(message)
    return ConfigError(message)
