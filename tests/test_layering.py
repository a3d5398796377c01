"""
No module under mdeploy/ outside `targets/<cloud>/` names a specific cloud (issue 12).

"Names" means code, not prose: an identifier with a cloud word in it (`aws_region`,
`KubernetesPool`), a string literal that is a cloud name or starts with one (`"kubernetes"`,
`"aws:region"`, `"azure-kv:"`), or an import of `mdeploy.targets.<cloud>`. Docstrings and
comments may mention clouds. The cloud words come from the registry, so a fifth target's
name is checked as soon as its folder exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mdeploy.targets import all_targets, placement_names, target_names

PACKAGE = Path(__file__).resolve().parents[1] / "mdeploy"

# Where naming a cloud is the point, each with why. Keep it short.
ALLOWED = {
    "mdeploy/serve/": "the in-container contract: the image detects the platform it runs on "
    "(SageMaker, Vertex, Azure ML variables) and reads that platform's secret store",
    "mdeploy/catalog/_provenance.py": "catalog data: where each cloud's rows come from",
    "mdeploy/catalog/_prices.py": "catalog data: each cloud's public price API",
    "mdeploy/catalog/build.py": "catalog data: the per-cloud row builders",
    "mdeploy/catalog/refresh.py": "catalog data: the per-cloud refresh jobs",
}
# Files still naming a cloud (issue 12 emptied it); the test fails on an entry that no longer
# names a cloud, so this list can only shrink, and it must stay empty.
KNOWN_DEBT: dict[str, str] = {}


def cloud_words() -> frozenset[str]:
    """Every cloud's names: folders, placement names, Pulumi plugins (azure-native), k8s."""
    words = set(target_names()) | set(placement_names()) | {"k8s"}
    for target in all_targets():
        words.update(target.pulumi_plugins)
    return frozenset(words - {"random"})  # a utility provider, not a cloud


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _words(identifier: str) -> set[str]:
    """`KubernetesPool` → {kubernetes, pool}; `aws_region` → {aws, region}."""
    return set(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier).lower().split("_"))


def cloud_mentions(source: str, words: frozenset[str]) -> list[tuple[int, str]]:
    """(line, what) for each place `source` names one of `words` in code."""
    alternatives = "|".join(sorted(map(re.escape, words)))
    literal = re.compile(rf"^({alternatives})([:-].*)?$")
    module = re.compile(rf"targets\.({alternatives})\b")
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs and (literal.match(node.value) or module.search(node.value)):
                found.append((line, repr(node.value)))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            found += [(line, name) for name in names if module.search(name)]
        else:
            name = _identifier(node)
            if name and _words(name) & words:
                found.append((line, name))
    return sorted(found)


def _identifier(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.arg):
        return node.arg
    return None


def _core_modules() -> dict[str, Path]:
    """Every module outside `targets/<folder>/`, by path relative to the repository."""
    folders = set(target_names())
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        parts = rel.split("/")
        if not (len(parts) > 3 and parts[1] == "targets" and parts[2] in folders):
            out[rel] = path
    return out


def _allowed(rel: str) -> bool:
    return any(rel == key or (key.endswith("/") and rel.startswith(key)) for key in ALLOWED)


def test_no_core_module_names_a_cloud() -> None:
    words = cloud_words()
    offenders = {
        rel: cloud_mentions(path.read_text(encoding="utf-8"), words)[:3]
        for rel, path in _core_modules().items()
        if not _allowed(rel) and rel not in KNOWN_DEBT
    }
    assert {rel: hits for rel, hits in offenders.items() if hits} == {}


def test_every_debt_entry_still_names_a_cloud() -> None:
    """A file that was cleaned up leaves KNOWN_DEBT, so the list can only shrink."""
    words = cloud_words()
    modules = _core_modules()
    clean = [
        rel
        for rel in KNOWN_DEBT
        if rel not in modules or not cloud_mentions(modules[rel].read_text(), words)
    ]
    assert clean == []


def test_no_debt_is_left() -> None:
    """Issue 12 done: no core module outside ALLOWED names a cloud, none waits in KNOWN_DEBT."""
    assert KNOWN_DEBT == {}


def test_every_allowed_entry_exists() -> None:
    for key in ALLOWED:
        assert (PACKAGE.parent / key).exists(), key


def test_cloud_words_come_from_the_registry() -> None:
    assert {"aws", "azure", "gcp", "kubernetes", "coreweave", "azure-native"} <= cloud_words()


def test_the_scanner_sees_code_but_not_prose() -> None:
    words = frozenset({"aws", "kubernetes"})
    source = '''
"""Module docstring about aws and kubernetes is prose."""
import mdeploy.targets.aws.rules
from mdeploy.targets.kubernetes import lws

# a comment about kubernetes


def region(aws_region: str) -> str:
    """Prose again: kubernetes."""
    key = "aws:region"
    if key == "kubernetes":
        return KubernetesPool
    return "plain text that says aws in the middle"
'''
    found = {what for _, what in cloud_mentions(source, words)}
    assert found == {
        "mdeploy.targets.aws.rules",
        "mdeploy.targets.kubernetes",
        "aws_region",
        "'aws:region'",
        "'kubernetes'",
        "KubernetesPool",
    }
