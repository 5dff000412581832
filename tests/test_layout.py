"""The package's layout: no import cycle between modules, and each room imports only below it.

Imports are read from the source with :mod:`ast`, including those inside functions
(a lazy import that dodges a cycle is still a cycle) and excluding those under
`if TYPE_CHECKING:` (annotations only, never executed).
"""

from __future__ import annotations

import ast
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
    # Side by side: validation predicts with inference's code; inference loads a model
    # with training's RunModule.from_checkpoint. Modules still form no cycle.
    "training": 5,
    "inference": 5,
    "tracking": 4,
    "export": 6,
    "cli": 7,
    "api": 7,
    "conf": 0,
}
# data/ is the datasplit component: it neither builds networks nor knows tasks.
FORBIDDEN = {("data", "architectures"), ("data", "tasks")}


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


def test_no_import_cycle() -> None:
    graph = import_graph()
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    rows, cols = [], []
    for source, targets in graph.items():
        for target in targets:
            # A package's __init__ importing its own submodules is how packages re-export.
            if target.startswith(source + "."):
                continue
            rows.append(index[source])
            cols.append(index[target])
    adjacency = csr_matrix(([1] * len(rows), (rows, cols)), shape=(len(names), len(names)))
    count, labels = connected_components(adjacency, directed=True, connection="strong")
    cycles = [
        sorted(n for n in names if labels[index[n]] == component)
        for component in range(count)
        if (labels == component).sum() > 1
    ]
    assert not cycles, f"import cycles: {cycles}"


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
