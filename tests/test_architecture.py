"""The floors of `minigpt4/` (docs/architecture.md), checked by reading the source with `ast`.

Nothing here imports the project: every `.py` under minigpt4/ is parsed, its imports of project
modules are resolved to files, and three rules are checked:

* floors: a module may import its own package and packages on LOWER floors only (an import of
  a package on the same floor or a higher one is a violation);
* cycles: no import cycle between modules (and hence none between packages);
* no function-local import of a project module (third-party packages that are heavy and
  optional, such as gradio, dlib, matplotlib and openai, may still be imported lazily).

`FLOORS` below is the one table; docs/architecture.md shows the same table and a test keeps
the two equal.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "minigpt4"

# floor -> the packages (minigpt4/<name>/) and top-level modules (minigpt4/<name>.py) on it.
# `minigpt4` is the package root (minigpt4/__init__.py), which every import runs first.
FLOORS: dict[int, tuple[str, ...]] = {
    0: ("minigpt4", "common"),
    1: ("models", "processors"),
    2: ("data", "features"),
    3: ("run_config",),
    4: ("eval",),
    5: ("training", "infer"),
    6: ("merr",),
    7: ("cli", "demo", "tools"),
}

# Known exceptions to the floors. Empty: anything found fails the test.
KNOWN_VIOLATIONS: set[tuple[str, str, str]] = set()


# --------------------------------------------------------------------------------------------
# reading the imports
# --------------------------------------------------------------------------------------------

def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root/package`."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def unit_of(module: str) -> str:
    """The floor-table name a module belongs to: its package under minigpt4/, or itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def project_imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """(imported project module, imported inside a function?, line) for each project import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append((_known(alias.name, modules), in_function, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, path, child)
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    found.append((_known(target, modules), in_function, child.lineno))
            visit(child, local)

    visit(tree, False)
    return found


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _known(name: str, modules: dict[str, Path]) -> str:
    """`name`, or its nearest enclosing module that exists (``import minigpt4.x.y as z`` forms)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


# --------------------------------------------------------------------------------------------
# the rules
# --------------------------------------------------------------------------------------------

def floor_of(floors: dict[int, tuple[str, ...]]) -> dict[str, int]:
    return {name: floor for floor, names in floors.items() for name in names}


def find_violations(root: Path, floors: dict[int, tuple[str, ...]] = FLOORS) -> set[tuple[str, str, str]]:
    """Every broken rule as (kind, module, other): kind "floor" | "local" | "cycle" | "unplaced"."""
    modules = module_files(root)
    floor = floor_of(floors)
    violations: set[tuple[str, str, str]] = set()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        if unit_of(module) not in floor:
            violations.add(("unplaced", module, f"add {unit_of(module)!r} to FLOORS in tests/test_architecture.py"))
            continue
        for target, in_function, _ in project_imports(module, path, modules):
            if target == module or target not in modules:
                continue
            graph[module].add(target)
            if in_function:
                violations.add(("local", module, target))
            mine, theirs = unit_of(module), unit_of(target)
            if mine != theirs and floor.get(theirs, -1) >= floor[mine]:
                violations.add(("floor", module, target))
    for cycle in module_cycles(graph):
        violations.add(("cycle", cycle[0], ", ".join(cycle[1:])))  # the first module, then the others
    return violations


def module_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def package_graph(root: Path) -> dict[str, set[str]]:
    modules = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        for target, _, _ in project_imports(module, path, modules):
            if unit_of(target) != unit_of(module):
                graph.setdefault(unit_of(module), set()).add(unit_of(target))
    return graph


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

def _describe(violations) -> str:
    return "\n".join(f"  {kind}: {module} -> {other}" for kind, module, other in sorted(violations))


def test_minigpt4_keeps_its_floors_has_no_cycles_and_no_local_project_imports():
    new = find_violations(REPO) - KNOWN_VIOLATIONS
    assert not new, ("imports that break docs/architecture.md (move the code down a floor, or the import "
                     "to the top of the module):\n" + _describe(new))


def test_no_cycle_between_packages():
    graph = package_graph(REPO)
    known_edges = {(unit_of(m), unit_of(t)) for kind, m, t in KNOWN_VIOLATIONS if kind == "floor"}
    cleaned = {p: {q for q in targets if (p, q) not in known_edges} for p, targets in graph.items()}
    assert module_cycles(cleaned) == []


def test_every_package_on_disk_has_a_floor_and_every_floor_name_exists():
    units = {unit_of(m) for m in module_files(REPO)}
    placed = set(floor_of(FLOORS))
    assert units - placed == set(), "add the new package to FLOORS (and to docs/architecture.md)"
    assert placed - units <= {"cli"}, "FLOORS names a package that is gone"  # cli/ arrives with h21b/h21d


def test_docs_show_the_same_floor_table():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = {}
    for floor, cells in re.findall(r"^\|\s*(\d+)\s*\|(.*)\|\s*$", text, flags=re.M):
        table[int(floor)] = tuple(re.findall(r"`([a-z_0-9]+)`", cells.split("|")[0]))
    assert table == FLOORS


# --- the checker itself catches each kind of violation (on a small fake tree) ---------------

def _write(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


FAKE_FLOORS = {0: ("minigpt4", "common"), 1: ("data", "models"), 2: ("cli",)}


def test_checker_reports_upward_sideways_local_cycle_and_unplaced(tmp_path):
    root = _write(tmp_path, {
        "minigpt4/__init__.py": "",
        "minigpt4/common/__init__.py": "",
        "minigpt4/common/io.py": "from minigpt4.data import shards\n",  # upward
        "minigpt4/data/__init__.py": "",
        "minigpt4/data/shards.py": "from .datasets import decode\n",  # cycle with datasets
        "minigpt4/data/datasets.py": "from . import shards\nfrom ..common import io\n",
        "minigpt4/models/__init__.py": "",
        "minigpt4/models/model.py": "import minigpt4.data.datasets as d\n"  # sideways (same floor)
                                    "def f():\n    import gradio\n    from minigpt4.common.io import x\n",
        "minigpt4/cli/__init__.py": "",
        "minigpt4/cli/train.py": "from minigpt4.models import model\nfrom minigpt4.common import io\n",
        "minigpt4/extra.py": "",
    })
    assert find_violations(root, FAKE_FLOORS) == {
        ("floor", "minigpt4.common.io", "minigpt4.data.shards"),
        ("floor", "minigpt4.models.model", "minigpt4.data.datasets"),
        ("local", "minigpt4.models.model", "minigpt4.common.io"),
        ("cycle", "minigpt4.common.io", "minigpt4.data.datasets, minigpt4.data.shards"),
        ("unplaced", "minigpt4.extra", "add 'extra' to FLOORS in tests/test_architecture.py"),
    }
    assert module_cycles(package_graph(root)) == [["common", "data"]]


def test_checker_passes_a_clean_tree(tmp_path):
    root = _write(tmp_path, {
        "minigpt4/__init__.py": "import os\n",
        "minigpt4/common/__init__.py": "",
        "minigpt4/common/media.py": "def read():\n    import decord\n",  # lazy third-party is fine
        "minigpt4/data/__init__.py": "",
        "minigpt4/data/shards.py": "from ..common.media import read\n",
        "minigpt4/data/datasets.py": "from . import shards\nfrom .shards import read\n",
        "minigpt4/cli/__init__.py": "",
        "minigpt4/cli/train.py": "from minigpt4.data.datasets import shards\nimport minigpt4\n",
    })
    assert find_violations(root, FAKE_FLOORS) == set()
    assert package_graph(root) == {"data": {"common"}, "cli": {"data", "minigpt4"}}
