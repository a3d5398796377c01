"""
The names and facts the registry of targets answers to, read as data by the layers below it.

`spec/`, `catalog/` and `plan/` sit under `targets/` in the layer order, so they may not
import it; yet a spec's `placement.clouds` and a catalog's target column must be checked
against the targets that exist, and the planner must know which targets split a replica
across shared nodes. This leaf module reads each `targets/<folder>/target.py` as text (no
import: no SDK, no pydantic) and returns the literal class attributes its Target class
declares (`catalog_targets`, `pool_placement`, `replica_unit`, `instance_label`, the
secret-reference forms and model-source schemes its platform stores; their defaults and
meaning are in `targets/base.py`). `mdeploy.targets` (the registry) imports the
same classes; a test checks that both agree.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "TargetFacts",
    "clear_caches",
    "default_clouds",
    "instance_labels",
    "model_source_schemes",
    "placement_names",
    "pool_placements",
    "secret_ref_forms",
    "secret_ref_prefixes",
    "secret_ref_shapes",
    "splittable_targets",
    "target_facts",
    "target_folders",
]

_DEFAULT_ROOT = str(Path(__file__).resolve().parent / "targets")
# `name: ClassVar[...] = <literal>` in a class body: a tuple (may span lines, hold comments and
# strings with parentheses), a quoted string, True/False/None. A regex finds where it starts,
# not ast.parse of the file: `mdeploy --help` reads these for its help text and must stay fast.
_ATTRIBUTE = r"^[ \t]+{name}\b[^=\n]*=[ \t]*(\(|\"[^\"\n]*\"|'[^'\n]*'|True|False|None)"
_LINE_END = re.compile(r"[ \t]*(#[^\n]*)?(\n|$)")
# A secret-reference form as a target declares it: `<scheme>:<WHAT>`, e.g. "aws-sm:ARN".
_FORM = re.compile(r"^([a-z][a-z0-9-]*):(\S+)$")


@dataclass(frozen=True)
class TargetFacts:
    """What one target folder declares, with `targets/base.py`'s defaults where it is silent."""

    folder: str
    catalog_targets: tuple[str, ...]
    pool_placement: str | None = None  # placement.<key> holding the user's cluster and pools
    replica_unit: str = "instance"  # "instance" (managed endpoint) or "pods" (shared nodes)
    instance_label: str = ""  # the managed endpoint kind, e.g. "Vertex AI"
    secret_ref_forms: tuple[str, ...] = ()  # serving.secrets forms it reads, e.g. "gcp-sm:NAME"
    secret_ref_patterns: tuple[str, ...] = ()  # exact regexes for those forms, when given
    model_source_schemes: tuple[str, ...] = ()  # model.source URL schemes, e.g. "gs"


def _roots() -> tuple[str, ...]:
    """The folders `mdeploy.targets` is loaded from (a test may extend its __path__)."""
    package = sys.modules.get("mdeploy.targets")
    return tuple(getattr(package, "__path__", None) or [_DEFAULT_ROOT])


def target_folders() -> dict[str, Path]:
    """Target folder name → its target.py, for every `targets/<name>/target.py`."""
    return dict(_scan(_roots()))


@lru_cache(maxsize=8)
def _scan(roots: tuple[str, ...]) -> tuple[tuple[str, Path], ...]:
    found: dict[str, Path] = {}
    for root in roots:
        for entry in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
            entry_point = entry / "target.py"
            if not entry.name.startswith(("_", ".")) and entry_point.is_file():
                found.setdefault(entry.name, entry_point)
    return tuple(sorted(found.items()))


def target_facts() -> tuple[TargetFacts, ...]:
    """Every target folder's declared facts, in folder order."""
    return _facts(_roots())


_FACT_NAMES = (
    "pool_placement",
    "replica_unit",
    "instance_label",
    "secret_ref_forms",
    "secret_ref_patterns",
    "model_source_schemes",
)


@lru_cache(maxsize=8)
def _facts(roots: tuple[str, ...]) -> tuple[TargetFacts, ...]:
    out = []
    for folder, path in _scan(roots):
        declared = {
            name: value for name in _FACT_NAMES if (value := _declared(str(path), name)) is not None
        }
        catalog = _declared(str(path)) or (folder,)
        out.append(TargetFacts(folder, tuple(catalog), **declared))
    return tuple(out)


def placement_names() -> tuple[str, ...]:
    """Every catalog/placement target name the targets deploy (sorted, no duplicates)."""
    return tuple(sorted({name for facts in target_facts() for name in facts.catalog_targets}))


def pool_placements() -> dict[str, tuple[str, ...]]:
    """`placement.<key>` of each target that takes the user's pools → its catalog targets."""
    return dict(_pools(_roots()))


@lru_cache(maxsize=8)
def _pools(roots: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (facts.pool_placement, facts.catalog_targets)
        for facts in _facts(roots)
        if facts.pool_placement
    )


def default_clouds() -> tuple[str, ...]:
    """The spec's default `placement.clouds`: every placement name except the pool ones.

    In folder order, then each target's declared order (aws, azure, gcp, coreweave today):
    a pool placement needs pools the user declares, so it cannot be on by default.
    """
    pools = pool_placements()
    return tuple(
        name for facts in target_facts() for name in facts.catalog_targets if name not in pools
    )


def splittable_targets() -> frozenset[str]:
    """Catalog targets where a replica is pods asking for N GPUs on shared nodes.

    Asked once per offer while ranking, hence the cache of the answer itself.
    """
    return _splittable(_roots())


@lru_cache(maxsize=8)
def _splittable(roots: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        name
        for facts in _facts(roots)
        if facts.replica_unit == "pods"
        for name in facts.catalog_targets
    )


def instance_labels() -> dict[str, str]:
    """Catalog target → its managed endpoint kind, for targets with one instance per replica."""
    return {
        name: facts.instance_label
        for facts in target_facts()
        if facts.replica_unit == "instance" and facts.instance_label
        for name in facts.catalog_targets
    }


def secret_ref_forms() -> tuple[str, ...]:
    """The `serving.secrets` forms the targets read, in folder order ("aws-sm:ARN", ...).

    `env:` and `file:` are read by every target on the deployer's machine: spec lists them.
    """
    return tuple(dict.fromkeys(form for facts in target_facts() for form in facts.secret_ref_forms))


def secret_ref_shapes() -> tuple[str, ...]:
    """One regex (unanchored) per declared form: the shape the spec accepts for it.

    A target's exact pattern for the form when it declares one, else `<scheme>:<non-space>`
    (`<scheme>:<no space or slash>/<non-space>` for a form with a slash): the precise check
    (ARN, vault and secret names) stays in the target's own `unsupported()`.
    """
    shapes: dict[str, None] = {}
    for facts in target_facts():
        for index, form in enumerate(facts.secret_ref_forms):
            exact = facts.secret_ref_patterns[index : index + 1]
            shapes.setdefault(exact[0] if exact else _shape(form))
    return tuple(shapes)


def _shape(form: str) -> str:
    found = _FORM.match(form)
    if not found:
        raise ValueError(f"secret reference form {form!r} is not <scheme>:<WHAT>")
    scheme = re.escape(found.group(1))
    return rf"{scheme}:[^\s/]+/\S+" if "/" in found.group(2) else rf"{scheme}:\S+"


def secret_ref_prefixes(folder: str) -> tuple[str, ...]:
    """The `<scheme>:` prefixes of the forms one target folder declares ("aws-sm:")."""
    return tuple(
        form.split(":", 1)[0] + ":"
        for facts in target_facts()
        if facts.folder == folder
        for form in facts.secret_ref_forms
    )


def model_source_schemes() -> tuple[str, ...]:
    """The `model.source` URL schemes the targets declare, in folder order ("s3", ...).

    `hf://` and local paths are every target's: spec lists them.
    """
    return tuple(
        dict.fromkeys(scheme for facts in target_facts() for scheme in facts.model_source_schemes)
    )


def clear_caches() -> None:
    """Forget what was read (`mdeploy.targets.refresh()` calls it after a folder is added)."""
    _scan.cache_clear()
    _facts.cache_clear()
    _pools.cache_clear()
    _splittable.cache_clear()
    _declared.cache_clear()


@lru_cache(maxsize=256)
def _declared(path: str, name: str = "catalog_targets") -> Any:
    """The literal value of the class attribute `name` in the target.py at `path`, else None.

    Only simple literals are read (a tuple of strings, a string, a bool, None); an attribute
    set from a variable reads as None, and the agreement test then fails for it.
    """
    pattern = re.compile(_ATTRIBUTE.format(name=re.escape(name)), re.MULTILINE)
    text = Path(path).read_text(encoding="utf-8")
    found = pattern.search(text)
    if not found:
        return None
    if found.group(1) == "(":
        return _tuple_at(text, found.start(1))
    try:
        return ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):
        return None


def _tuple_at(text: str, start: int) -> Any:
    """The parenthesised literal opening at `start`, or None when it is not a pure literal.

    Cut at each `)` in turn: a cut inside a string or a nested group does not parse, the
    first one that parses is the closing one. What follows it must end the line (a comment
    may), so `("a",) + OTHER` reads as None, not as ("a",).
    """
    end = text.find(")", start)
    while end != -1:
        try:
            tree = ast.parse(text[start : end + 1], mode="eval")
        except SyntaxError:
            end = text.find(")", end + 1)
            continue
        if not _LINE_END.match(text, end + 1):
            return None
        try:
            return ast.literal_eval(tree)
        except ValueError:
            return None
    return None
