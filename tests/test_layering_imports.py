"""
The import graph of the whole package (lazy imports inside functions included), from the AST.

Issue 12's "done means": no import between sibling target folders (shared code lives in
`mdeploy/targets/*.py`), no import circle between target modules, and no module importing a
layer above its own (cli → deploy/image/ops → targets → plan → catalog → spec).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mdeploy.targets import target_names

PACKAGE = Path(__file__).resolve().parents[1] / "mdeploy"
# Layer of each top-level part, higher imports lower. Leaf modules are 0.
LAYERS = {
    "_gc": 0,
    "errors": 0,
    "target_names": 0,
    "jurisdictions": 0,
    "spec": 1,
    "catalog": 2,
    "plan": 3,
    "targets": 4,
    "image": 5,
    "deploy": 5,
    "ops": 5,
    "cli": 6,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(source: str, known: set[str]) -> set[str]:
    """The known modules `source` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out & known


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {n: imports_of(p.read_text(), known) - {n} for n, p in modules.items()}


def _folder(module: str) -> str | None:
    """The target folder a module belongs to (mdeploy.targets.<folder>.x), else None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "targets" and len(parts) > 3 else None


def sibling_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(module, import) pairs where one target folder imports another."""
    return {
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if _folder(module) and _folder(dep) and _folder(module) != _folder(dep)
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Modules that reach themselves (each circle once, as its sorted members)."""
    found: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    members = {start} | {m for m in seen if start in _reach(graph, m)}
                    found.add(tuple(sorted(members)))
                elif dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
    return [list(c) for c in sorted(found)]


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, import) pairs where a module imports a layer above its own."""

    def layer(module: str) -> int | None:
        return LAYERS.get(module.split(".")[1]) if "." in module else None

    out = []
    for module, deps in graph.items():
        for dep in deps:
            mine, theirs = layer(module), layer(dep)
            if mine is not None and theirs is not None and theirs > mine:
                out.append((module, dep))
    return sorted(out)


def test_every_target_folder_is_found() -> None:
    folders = {p.parent.name for p in (PACKAGE / "targets").glob("*/target.py")}
    assert set(target_names()) == folders


def test_no_import_between_sibling_target_folders() -> None:
    assert sorted(sibling_imports(_graph())) == []


def test_nothing_in_a_target_folder_imports_its_target_module() -> None:
    """target.py is the entry point only: the folder's other modules import its rules.py."""
    graph = _graph()
    for folder in target_names():
        entry, package = f"mdeploy.targets.{folder}.target", f"mdeploy.targets.{folder}"
        users = sorted(m for m, deps in graph.items() if entry in deps and m != package)
        assert users == [], f"{users} import {entry}; import {folder}/rules.py instead"


def test_no_import_circle_between_target_modules() -> None:
    graph = _graph()
    targets = {
        m: {d for d in deps if d.startswith("mdeploy.targets")}
        for m, deps in graph.items()
        if m.startswith("mdeploy.targets")
    }
    assert cycles(targets) == []


def test_no_import_circle_anywhere_in_the_package() -> None:
    # Lazy imports count: a circle hidden in a function body is still two modules that
    # cannot be understood (or moved) one without the other.
    assert cycles(_graph()) == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], expected: list) -> None:
    assert cycles(graph) == expected


def test_the_checks_see_a_sibling_and_an_upward_import() -> None:
    graph = {
        "mdeploy.targets.echo.ops": {"mdeploy.targets.kubernetes.ops"},
        "mdeploy.spec.models": {"mdeploy.targets.base"},
    }
    assert sibling_imports(graph) == {
        ("mdeploy.targets.echo.ops", "mdeploy.targets.kubernetes.ops")
    }
    assert upward_imports(graph) == [("mdeploy.spec.models", "mdeploy.targets.base")]
    known = {"mdeploy.targets.aws.target"}
    lazy = "def f():\n    from mdeploy.targets.aws.target import TARGET\n"
    assert imports_of(lazy, known) == known


def test_spec_and_catalog_share_one_jurisdictions_tuple() -> None:
    from mdeploy import catalog
    from mdeploy.jurisdictions import JURISDICTIONS
    from mdeploy.spec import models

    assert models.JURISDICTIONS is JURISDICTIONS and catalog.JURISDICTIONS is JURISDICTIONS
