"""The import graph inside hybrid_fast: acyclic, and ``import hybrid_fast`` stays light.

The graph is read from the source (ast), not by importing: every ``import``/``from ... import``
anywhere in a module (top level, function bodies, try/except), relative ones resolved, plus
``importlib.import_module("hybrid_fast...")`` with a literal name. Imports under
``if TYPE_CHECKING:`` are left out (they never run). An edge goes to the module named; ``from P
import name`` goes to ``P.name`` when that is a module, else to ``P``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "hybrid_fast"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every .py file under the package folder ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(absolute dotted name, line)`` of every import in ``tree`` that can run; ``from P import
    a`` yields ``P.a`` (resolved against the known modules by the caller)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported module inside the package: first line}}`` for the package ``root``."""
    modules = module_names(root)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: dict[str, int] = {}
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            target = name
            while target and target not in modules:  # P.attr -> P; a.b.c (not a module) -> a.b
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, set(c)) for c in components]


def _cycle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest cycle ``[start, ..., start]`` through the first module of ``component``."""
    start = min(component)
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if w in component and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle found in component {sorted(component)}")


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


# ---------------------------------------------------------------------- the checker, on a toy
def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "toy" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "toy"


def test_checker_finds_function_level_and_relative_cycles(tmp_path):
    toy = write_package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "from . import b\n\ndef f():\n    return b\n",
        "sub/__init__.py": "",
        "sub/c.py": "def g():\n    from ..a import f  # function level, two dots\n    return f\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
                "def h():\n    from .sub import c\n    return c\n",
    })
    graph = import_graph(toy)
    assert graph["toy"] == {"toy.a": 1}
    assert graph["toy.a"] == {"toy.b": 1}
    assert graph["toy.b"] == {"toy.sub.c": 5}  # the TYPE_CHECKING import is not an edge
    assert graph["toy.sub.c"] == {"toy.a": 2}
    cycles = find_cycles(graph)
    assert cycles == [["toy.a", "toy.b", "toy.sub.c", "toy.a"]]
    assert "toy.sub.c (line 2) -> toy.a" in describe(graph, cycles[0])
    # breaking the function-level edge leaves no cycle
    (toy / "sub" / "c.py").write_text("def g():\n    return 1\n")
    assert find_cycles(import_graph(toy)) == []


def test_checker_reads_import_module_and_absolute_imports(tmp_path):
    toy = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "import importlib\nimport toy.b as b\n",
        "b.py": "import importlib\n\ndef load():\n    return importlib.import_module('toy.a')\n",
    })
    graph = import_graph(toy)
    assert graph["toy.a"] == {"toy.b": 2} and graph["toy.b"] == {"toy.a": 4}
    assert find_cycles(graph) == [["toy.a", "toy.b", "toy.a"]]


# ---------------------------------------------------------------------- hybrid_fast itself
def test_no_import_cycle_inside_hybrid_fast():
    graph = import_graph(PACKAGE_DIR)
    assert "hybrid_fast.model" in graph and "hybrid_fast.eval.metrics" in graph  # the walk saw the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles inside hybrid_fast:\n" + "\n".join(describe(graph, c) for c in cycles)


def reachable(graph: dict[str, dict[str, int]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_metrics_import_no_model_code():
    """docs/style.md: metrics are pure functions that know nothing of models."""
    graph = import_graph(PACKAGE_DIR)
    model_code = {m for m in graph if m in ("hybrid_fast.model", "hybrid_fast.encoder")
                  or m.startswith("hybrid_fast.train")}
    assert not reachable(graph, "hybrid_fast.eval.metrics") & model_code


HEAVY = ("transformers", "datasets", "matplotlib")


def test_imports_load_no_heavy_dependency():
    """``import hybrid_fast`` (docs/style.md), and the encoder modules too: transformers loads
    when a model is built, not when its code is imported."""
    code = ("import sys\n"
            f"heavy = {HEAVY!r}\n"
            "import hybrid_fast\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
            "import hybrid_fast.model, hybrid_fast.encoder, hybrid_fast.eval, hybrid_fast.data\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE_DIR.parent)
    after_package, after_encoders = out.stdout.splitlines()
    assert after_package == "", f"import hybrid_fast imported {after_package}"
    assert after_encoders == "", f"importing the encoder modules imported {after_encoders}"
