"""
No module under mdeploy/ outside `targets/<cloud>/` names a specific cloud (issue 12).

"Names" means code, not prose: an identifier with a cloud word in it (`aws_region`,
`KubernetesPool`), a string literal that is a cloud name or starts with one (`"kubernetes"`,
`"aws:region"`, `"azure-kv:"`), a string literal holding a secret-reference or model-source
scheme a target declares (`aws-sm` next to a `:`, `s3` in a literal with `://`, so a regex
such as `^(hf|s3)://` counts), or an import of `mdeploy.targets.<cloud>`. Docstrings and
comments may mention clouds. The cloud words and schemes come from the registry, so a fifth
target's are checked as soon as its folder exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mdeploy.targets import all_targets, placement_names, target_names

# What a literal naming a declared scheme has besides the scheme: `aws-sm:`, `^(hf|s3)://`.
SECRET_SEPARATOR = ":"
SOURCE_SEPARATOR = "://"

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
# Files still naming a cloud; the test fails on an entry that no longer names a cloud, so this
# list can only shrink. Issue 12 emptied it.
KNOWN_DEBT: dict[str, str] = {}


def cloud_words() -> frozenset[str]:
    """Every cloud's names: folders, placement names, Pulumi plugins (azure-native), k8s."""
    words = set(target_names()) | set(placement_names()) | {"k8s"}
    for target in all_targets():
        words.update(target.pulumi_plugins)
    return frozenset(words - {"random"})  # a utility provider, not a cloud


def declared_schemes() -> dict[str, str]:
    """Each scheme a target declares → the separator a literal naming it also holds.

    Secret-reference schemes (`aws-sm` of "aws-sm:ARN") go with ":", model-source schemes
    (`s3`) with "://". The generic ones (env:, file:, hf://) are no target's, so not here.
    """
    schemes = {}
    for target in all_targets():
        for form in target.secret_ref_forms:
            schemes[form.split(":", 1)[0]] = SECRET_SEPARATOR
        for scheme in target.model_source_schemes:
            schemes[scheme] = SOURCE_SEPARATOR
    return schemes


def _names_a_scheme(text: str, schemes: dict[str, str]) -> bool:
    """`text` holds a declared scheme as a whole word, and the separator that makes it one."""
    return any(
        separator in text and re.search(rf"(?<![\w-]){re.escape(scheme)}(?![\w-])", text)
        for scheme, separator in schemes.items()
    )


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


def cloud_mentions(
    source: str, words: frozenset[str], schemes: dict[str, str] | None = None
) -> list[tuple[int, str]]:
    """(line, what) for each place `source` names one of `words` or `schemes` in code."""
    schemes = schemes or {}
    alternatives = "|".join(sorted(map(re.escape, words)))
    literal = re.compile(rf"^({alternatives})([:-].*)?$")
    module = re.compile(rf"targets\.({alternatives})\b")
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = literal.match(node.value) or module.search(node.value)
            if id(node) not in docs and (named or _names_a_scheme(node.value, schemes)):
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
    words, schemes = cloud_words(), declared_schemes()
    offenders = {
        rel: cloud_mentions(path.read_text(encoding="utf-8"), words, schemes)[:3]
        for rel, path in _core_modules().items()
        if not _allowed(rel) and rel not in KNOWN_DEBT
    }
    assert {rel: hits for rel, hits in offenders.items() if hits} == {}


def test_every_debt_entry_still_names_a_cloud() -> None:
    """A file that was cleaned up leaves KNOWN_DEBT, so the list can only shrink."""
    words, schemes = cloud_words(), declared_schemes()
    modules = _core_modules()
    clean = [
        rel
        for rel in KNOWN_DEBT
        if rel not in modules or not cloud_mentions(modules[rel].read_text(), words, schemes)
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


def test_declared_schemes_come_from_the_registry() -> None:
    assert declared_schemes() == {
        "aws-sm": ":",
        "azure-kv": ":",
        "gcp-sm": ":",
        "k8s": ":",
        "s3": "://",
        "az": "://",
        "gs": "://",
    }


def test_the_scanner_sees_a_declared_scheme_inside_a_literal() -> None:
    """The hand-written lists spec/models.py held before: no literal starts with a cloud."""
    schemes = {"aws-sm": ":", "lab-vault": ":", "s3": "://", "az": "://"}
    source = r'''
"""Prose: aws-sm:ARN and s3:// in a docstring are fine."""
import re

SECRET = re.compile(
    r"^(env:[A-Za-z_][A-Za-z0-9_]*"
    r"|aws-sm:\S+)$"
)
VAULT = re.compile(r"^(lab-vault):\S+$")
SOURCE = re.compile(r"^(hf|s3|az)://\S+$")
MESSAGE = "must be hf://, s3:// or a local path"
GENERIC = re.compile(r"^(env|file):\S+$|^hf://")
PROSE = "copy the weights to an s3 bucket"  # no "://": a word, not a scheme
OTHER = "aws-smx: sub-word"  # not the scheme as a whole word
'''
    found = [line for line, _ in cloud_mentions(source, frozenset(), schemes)]
    assert found == [6, 9, 10, 11]


def test_spec_models_holds_no_declared_scheme() -> None:
    text = (PACKAGE / "spec" / "models.py").read_text(encoding="utf-8")
    assert cloud_mentions(text, cloud_words(), declared_schemes()) == []
