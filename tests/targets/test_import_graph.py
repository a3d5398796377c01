"""The import graph of mdeploy/targets (lazy imports inside functions included), from the AST."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mdeploy" / "targets"
CLOUDS = ("aws", "azure", "gcp", "kubernetes")
# Sibling imports allowed: none (the shared login code lives in targets/registry.py).
KNOWN_SIBLING: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parents[1]).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every mdeploy.targets module `path` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out & known


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle_under_targets() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_in_a_cloud_folder_imports_its_target_module() -> None:
    """target.py is the entry point only: the folder's other modules import rules.py."""
    graph = _graph()
    for cloud in CLOUDS:
        entry = f"mdeploy.targets.{cloud}.target"
        users = sorted(
            m for m, deps in graph.items() if entry in deps and m != f"mdeploy.targets.{cloud}"
        )
        assert users == [], f"{users} import {entry}; import {cloud}/rules.py instead"


def test_no_new_import_between_sibling_clouds() -> None:
    graph = _graph()
    sibling = {
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if len(module.split(".")) > 3
        and len(dep.split(".")) > 3
        and module.split(".")[2] != dep.split(".")[2]
        and module.split(".")[2] in CLOUDS
        and dep.split(".")[2] in CLOUDS
    }
    assert sibling <= KNOWN_SIBLING, sorted(sibling - KNOWN_SIBLING)
