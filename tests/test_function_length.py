"""No function in the package is over 60 lines, except the networks' constructors.

A function's length runs from its `def` line to its last line, docstring included
(decorators excluded). A network's `__init__` in `architectures/` lays out its
layers in one place and is exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dacapo_hydra"
MAX_LINES = 60


def long_functions(root: Path, max_lines: int = MAX_LINES) -> list[tuple[str, str, int]]:
    """(path from `root`'s parent, qualified name, lines) of each function over `max_lines`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        exempt = path.parent.name == "architectures"
        found += [
            (relative, name, lines)
            for name, lines in _lengths(ast.parse(path.read_text(), str(path)))
            if lines > max_lines and not (exempt and name.rsplit(".", 1)[-1] == "__init__")
        ]
    return found


def _lengths(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines) of every function under `tree`, nested ones included."""
    out = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                out.append((name, node.end_lineno - node.lineno + 1))
            out += _lengths(node, f"{name}.")
        else:
            out += _lengths(node, prefix)
    return out


def test_the_counter_finds_a_long_function_and_spares_a_network_constructor(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pkg"
    (root / "architectures").mkdir(parents=True)
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_LINES))
    (root / "long.py").write_text(
        f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}"
    )
    (root / "architectures" / "net.py").write_text(
        f"class Net:\n    def __init__(self):\n{body}\n    def forward(self):\n{body}"
    )
    assert long_functions(root) == [
        ("pkg/architectures/net.py", "Net.forward", MAX_LINES + 1),
        ("pkg/long.py", "A.long", MAX_LINES + 1),
    ]


def test_no_function_is_over_60_lines() -> None:
    offenders = long_functions(PACKAGE)
    listing = "\n".join(f"{path}: {name} ({lines} lines)" for path, name, lines in offenders)
    assert not offenders, f"functions over {MAX_LINES} lines; split them:\n{listing}"
