"""Schemas, constructors and YAMLs agree: a parameter is spelled the same in all three.

A task option is written three times: the constructor of what it builds
(`AffinitiesTask.__init__`), its schema dataclass (`AffinitiesTaskConfig`) and its
YAML (`conf/task/affinities.yaml`); an architecture twice, its schema being made
from its constructor (`config/architecture.py`), so for it the comparison checks
that generator. These tests fail when they drift apart: the
constructor and the schema must name the same parameters (less those the run
passes itself, e.g. `dims`), with equal defaults where both give one and the
same required ones; every key a YAML sets must be a field of its schema (nested
schemas too). Nodes typed `Any` (a MONAI network's or a module's own
arguments, raw/gt array specs, optimiser targets) are checked by their own
targets when they are built, not here.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra.utils
import pytest
from omegaconf import MISSING, OmegaConf

from dacapo_hydra.config import architecture, datasplit, task, trainer
from dacapo_hydra.data import normalize
from dacapo_hydra.data.datasplit import Dataset, Sampling
from dacapo_hydra.data.tools import synthetic
from dacapo_hydra.tasks.scaled_distance import ScaledDistanceOptions, ScaledDistanceTask

CONF = Path(__file__).resolve().parents[2] / "conf"
HYDRA_KEYS = {"_target_", "_recursive_", "_partial_", "_convert_", "_args_"}
# What the run passes when it builds the object, never written in a config.
FROM_THE_RUN = {
    "task": {"dims", "voxel_size", "object_radius"},
    "architecture": {"dims", "in_channels"},
}
GROUP_SCHEMAS = {
    "task": task.SCHEMAS,
    "architecture": architecture.SCHEMAS,
    "datasplit": datasplit.SCHEMAS,
    "trainer": trainer.SCHEMAS,
}
NO_DEFAULT = inspect.Parameter.empty


def _plain(value: Any) -> Any:
    """Tuples as lists (constructors default to tuples, schemas to lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def schema_defaults(schema: type) -> dict[str, Any]:
    """Each field of a schema dataclass and its default (MISSING where it has none)."""
    out = {}
    for f in dataclasses.fields(schema):
        if f.name in HYDRA_KEYS:
            continue
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:
            out[f.name] = MISSING
    return out


def constructor_defaults(target: Callable[..., Any], passed: set[str]) -> dict[str, Any]:
    """Each parameter of `target` and its default (NO_DEFAULT where required).

    A constructor taking `**options` passes them to its base class: the parameters
    of the bases' constructors, down the MRO, are its parameters too.
    """
    out: dict[str, Any] = {}
    classes = target.__mro__ if isinstance(target, type) else [target]
    for cls in classes:
        if isinstance(target, type) and "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls).parameters.values()
        for p in params:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in passed:
                continue
            out.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return out


def compare(where: str, built: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What differs between a constructor's parameters and a schema's fields."""
    wrong = []
    if set(built) != set(schema):
        wrong.append(
            f"{where}: only the constructor has {sorted(set(built) - set(schema))}, "
            f"only the schema has {sorted(set(schema) - set(built))}"
        )
    for name in sorted(set(built) & set(schema)):
        ours, theirs = built[name], schema[name]
        if (ours is NO_DEFAULT) != (theirs is MISSING):
            wrong.append(
                f"{where}.{name}: required in "
                f"{'the constructor' if ours is NO_DEFAULT else 'the schema'} only"
            )
        elif ours is not NO_DEFAULT and _plain(ours) != _plain(theirs):
            wrong.append(f"{where}.{name}: constructor default {ours!r}, schema {theirs!r}")
    return wrong


def built_schemas() -> Iterator[tuple[str, str, type]]:
    """(group, option name, schema) of every schema that names a `_target_`."""
    for group in ("task", "architecture"):
        for name, schema in GROUP_SCHEMAS[group].items():
            yield group, name, schema


@pytest.mark.parametrize(("group", "name", "schema"), list(built_schemas()))
def test_constructor_and_schema_agree(group: str, name: str, schema: type) -> None:
    target = hydra.utils.get_object(schema._target_)
    built = constructor_defaults(target, FROM_THE_RUN[group])
    assert compare(f"{group}/{name}", built, schema_defaults(schema)) == []


def test_scaled_distance_options_name_the_base_constructor() -> None:
    """The `**options` the distance tasks pass on are the base constructor's parameters."""
    base = constructor_defaults(ScaledDistanceTask, {"dims", "voxel_size"})
    assert set(typing.get_type_hints(ScaledDistanceOptions)) == set(base)


def test_datasplit_schemas_and_their_readers_agree() -> None:
    wrong = compare(
        "datasplit.sampling",
        constructor_defaults(Sampling, set()),
        schema_defaults(datasplit.SamplingConfig),
    )
    # A dataset's arrays are opened from their specs; the rest is taken as written.
    dataset = constructor_defaults(Dataset, set())
    fields = schema_defaults(datasplit.DatasetConfig)
    assert set(dataset) == set(fields)
    for name in ("sample_points", "allow_empty"):
        assert dataset[name] == fields[name], name
    # The synthetic generator's parameters; `container` is its `path`.
    generator = constructor_defaults(synthetic._params, set())
    synthetic_fields = schema_defaults(datasplit.SyntheticConfig)
    synthetic_fields["path"] = synthetic_fields.pop("container")
    generator["path"] = NO_DEFAULT
    wrong += compare("datasplit.synthetic", generator, synthetic_fields)
    assert wrong == []


def test_normalize_schema_names_the_normalizer_options() -> None:
    fields = schema_defaults(datasplit.NormalizeConfig)
    options = {*normalize.SHARED_OPTIONS, *(n for o in normalize.MODE_OPTIONS.values() for n in o)}
    assert set(fields) == options
    assert fields["mode"] == normalize.DEFAULT_MODE
    assert fields["sample_voxels"] == normalize.SAMPLE_VOXELS
    # Values a mode measures unless given are null in the schema.
    assert all(fields[n] is None for o in normalize.MODE_OPTIONS.values() for n in o)


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass a field's type names (`X`, `X | None`), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


def unknown_keys(node: Any, schema: type, where: str) -> list[str]:
    """Keys of a YAML node that its schema lacks, nested dataclasses included."""
    hints = typing.get_type_hints(schema)
    wrong = []
    for key, value in node.items():
        if key == "defaults" or key in HYDRA_KEYS:
            continue
        if key not in hints:
            wrong.append(f"{where}.{key}")
            continue
        hint = hints[key]
        inner = _dataclass_of(hint)
        if inner is not None and isinstance(value, dict):
            wrong += unknown_keys(value, inner, f"{where}.{key}")
        elif typing.get_origin(hint) is list and isinstance(value, list):
            (item,) = typing.get_args(hint)
            if dataclasses.is_dataclass(item):
                for i, entry in enumerate(value):
                    if isinstance(entry, dict):
                        wrong += unknown_keys(entry, item, f"{where}.{key}[{i}]")
    return wrong


def yaml_schema(group: str, path: Path) -> type:
    """The schema a group option's YAML extends: `/schema/<group>/<name>`, or another option's."""
    node = OmegaConf.to_container(OmegaConf.load(path))
    for entry in node.get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        if entry.startswith(f"/schema/{group}/"):
            return GROUP_SCHEMAS[group][entry.removeprefix(f"/schema/{group}/").split("@")[0]]
        return yaml_schema(group, path.with_name(f"{entry}.yaml"))
    raise AssertionError(f"{path}: extends no schema (defaults: /schema/{group}/<name>)")


@pytest.mark.parametrize(
    "path",
    sorted(p for group in GROUP_SCHEMAS for p in (CONF / group).glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_every_yaml_key_is_a_schema_field(path: Path) -> None:
    group = path.parent.name
    schema = yaml_schema(group, path)
    node = OmegaConf.to_container(OmegaConf.load(path))
    assert unknown_keys(node, schema, f"{group}/{path.stem}") == []
    target = node.get("_target_")
    assert target in (None, getattr(schema, "_target_", None)), f"{path}: _target_ {target}"


def test_a_drift_is_seen() -> None:
    """The comparison itself: a renamed parameter, a changed default, a new requirement."""

    @dataclasses.dataclass
    class Schema:
        _target_: str = "x"
        size: int = 2
        names: list[str] = dataclasses.field(default_factory=lambda: ["a"])
        shape: Any = MISSING

    def build(dims: int, size: int = 3, names: tuple[str, ...] = ("a",), shape: Any = 1) -> None:
        del dims, size, names, shape

    wrong = compare("t", constructor_defaults(build, {"dims"}), schema_defaults(Schema))
    assert wrong == [
        "t.shape: required in the schema only",
        "t.size: constructor default 3, schema 2",
    ]

    def renamed(dims: int, sizes: int = 2, names: tuple[str, ...] = ("a",)) -> None:
        del dims, sizes, names

    assert compare("t", constructor_defaults(renamed, {"dims"}), schema_defaults(Schema))[0] == (
        "t: only the constructor has ['sizes'], only the schema has ['shape', 'size']"
    )


def test_an_unknown_yaml_key_is_seen() -> None:
    """The YAML walk itself: misspelt keys in nested schemas and in list entries."""
    node = {
        "synthetic": {"container": "x.zarr", "bogus": 1},
        "train": [{"name": "a", "raw": {"any": "spec"}, "wieght": 2}],
        "normalize": {"mode": "minmax", "maxx": 3},
    }
    assert unknown_keys(node, datasplit.DataSplitConfig, "d") == [
        "d.synthetic.bogus",
        "d.train[0].wieght",
        "d.normalize.maxx",
    ]
    assert unknown_keys({"augment": {"noise": {"sdt": 2}}}, trainer.TrainerConfig, "t") == [
        "t.augment.noise.sdt"
    ]
