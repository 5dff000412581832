"""The package's layout: no import cycle between modules or rooms, each room imports only
below it, and a checkpoint's stored hyper-parameters are read in `model/` alone.

Imports are read from the source with :mod:`ast`, including those inside functions
(a lazy import that dodges a cycle is still a cycle) and excluding those under
`if TYPE_CHECKING:` (annotations only, never executed).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

PACKAGE = Path(__file__).resolve().parents[1] / "dacapo_hydra"

# Each room may import only rooms of a lower rank (and itself). Ranks follow the data
# flow: the four components' rooms at the bottom, then what trains, what applies,
# what records, what exports, and the commands and API on top.
RANKS = {
    "errors": 0,
    "trust": 1,
    "devices": 1,
    "config": 1,
    "data": 2,
    # A leaf (torch and MONAI only): config makes the group's schemas from its constructors.
    "architectures": 1,
    "tasks": 3,
    "evaluation": 2,
    # The plan reads the data's fingerprint and the networks' shape arithmetic.
    "planning": 3,
    # The trained model (spec, loading, in-memory prediction), below what trains and
    # what applies it; they share it and never import each other (FORBIDDEN).
    "model": 4,
    "training": 5,
    "inference": 5,
    "tracking": 4,
    "export": 6,
    "cli": 7,
    "api": 7,
    "conf": 0,
}
# data/ is the datasplit component: it neither builds networks nor knows tasks.
FORBIDDEN = {
    ("data", "architectures"),
    ("data", "tasks"),
    ("training", "inference"),
    ("inference", "training"),
}
# Where a checkpoint's `hparams` may be read: model/ (the ModelSpec), and trust.py, which
# vets the stored config before model/ reads anything of it.
HPARAMS_READERS = ("model/", "trust.py")
HPARAMS_READ = re.compile(r"hparams(\[|\.get\()")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that `path` imports anywhere, except under TYPE_CHECKING."""
    name = module_name(path) if path.is_relative_to(PACKAGE.parent) else path.stem
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    # `from dacapo_hydra.x import y` names module x.y if it exists, else module x.
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def strong_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of nodes that reach each other (each a cycle), self-loops aside."""
    names = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    index = {n: i for i, n in enumerate(names)}
    rows, cols = [], []
    for source, targets in graph.items():
        for target in targets:
            rows.append(index[source])
            cols.append(index[target])
    adjacency = csr_matrix(([1] * len(rows), (rows, cols)), shape=(len(names), len(names)))
    count, labels = connected_components(adjacency, directed=True, connection="strong")
    return [
        sorted(n for n in names if labels[index[n]] == component)
        for component in range(count)
        if (labels == component).sum() > 1
    ]


def room_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Which rooms import which, from the modules' imports (a room's own aside)."""
    rooms: dict[str, set[str]] = {}
    for source, targets in graph.items():
        here = room(source)
        if here is None:
            continue
        there = {room(t) for t in targets} - {here, None}
        rooms.setdefault(here, set()).update(r for r in there if r is not None)
    return rooms


def test_no_import_cycle() -> None:
    graph = {
        # A package's __init__ importing its own submodules is how packages re-export.
        source: {t for t in targets if not t.startswith(source + ".")}
        for source, targets in import_graph().items()
    }
    cycles = strong_cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_no_cycle_between_rooms() -> None:
    """Rooms (packages) form no cycle either, training and inference included."""
    cycles = strong_cycles(room_graph(import_graph()))
    assert not cycles, f"rooms importing each other: {cycles}"


def test_a_cycle_between_rooms_is_seen() -> None:
    graph = {
        "dacapo_hydra.training.validation": {"dacapo_hydra.inference.plan"},
        "dacapo_hydra.inference.plan": {"dacapo_hydra.model.spec"},
        "dacapo_hydra.inference.predict": {"dacapo_hydra.training.module"},
    }
    assert strong_cycles(room_graph(graph)) == [["inference", "training"]]


def hparams_reads(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """`path:line` of each read of a checkpoint's hyper-parameters (`hparams[`, `hparams.get(`)."""
    return [
        f"{path.relative_to(root)}:{number}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HPARAMS_READ.search(line)
    ]


def test_hparams_are_read_in_model_only() -> None:
    """Facts about a trained model come from its ModelSpec, never from the stored dicts."""
    reads = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.relative_to(PACKAGE).as_posix().startswith(HPARAMS_READERS)
        for hit in hparams_reads(path)
    ]
    assert not reads, "hparams read outside model/ (use ModelSpec):\n" + "\n".join(reads)


def test_an_hparams_read_is_seen(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text('a = module.hparams["meta"]\nb = hparams.get("config")\nc = spec.dims\n')
    assert hparams_reads(source, tmp_path) == ["x.py:1", "x.py:2"]


def test_rooms_import_only_below_them() -> None:
    wrong = []
    for source, targets in import_graph().items():
        here = room(source)
        if here is None or here not in RANKS:
            continue
        for target in targets:
            there = room(target)
            if there is None or there == here:
                continue
            if (here, there) in FORBIDDEN or RANKS.get(there, 99) > RANKS[here]:
                wrong.append(f"{source} imports {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.relative_to(PACKAGE.parent)}: {lines} lines (at most 400)"


def test_a_cycle_is_seen(tmp_path: Path) -> None:
    """The walker itself: a lazy import inside a function counts, a TYPE_CHECKING one does not."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dacapo_hydra.training import run\n"
        "def f():\n    from dacapo_hydra.inference import predict\n"
    )
    found = imports_of(source, {"dacapo_hydra.training.run", "dacapo_hydra.inference.predict"})
    assert found == {"dacapo_hydra.inference.predict"}
