"""
The names and facts the registry of targets answers to, read as data by the layers below it.

`spec/`, `catalog/` and `plan/` sit under `targets/` in the layer order, so they may not
import it; yet a spec's `placement.clouds` and a catalog's target column must be checked
against the targets that exist, and the planner must know which targets split a replica
across shared nodes. This leaf module reads each `targets/<folder>/target.py` as text (no
import: no SDK, no pydantic) and returns the literal class attributes its Target class
declares (`catalog_targets`, `pool_placement`, `replica_unit`, `instance_label`; their
defaults and meaning are in `targets/base.py`). `mdeploy.targets` (the registry) imports the
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
    "placement_names",
    "pool_placements",
    "splittable_targets",
    "target_facts",
    "target_folders",
]

_DEFAULT_ROOT = str(Path(__file__).resolve().parent / "targets")
# `name: ClassVar[...] = <literal>` in a class body: a tuple (may span lines), a quoted string,
# True/False/None. A regex, not ast.parse of the file: `mdeploy --help` reads these for its
# help text and must stay fast.
_ATTRIBUTE = r"^[ \t]+{name}\b[^=\n]*=[ \t]*(\([^)]*\)|\"[^\"\n]*\"|'[^'\n]*'|True|False|None)"
_COMMENT = re.compile(r"#[^\n]*")


@dataclass(frozen=True)
class TargetFacts:
    """What one target folder declares, with `targets/base.py`'s defaults where it is silent."""

    folder: str
    catalog_targets: tuple[str, ...]
    pool_placement: str | None = None  # placement.<key> holding the user's cluster and pools
    replica_unit: str = "instance"  # "instance" (managed endpoint) or "pods" (shared nodes)
    instance_label: str = ""  # the managed endpoint kind, e.g. "Vertex AI"


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


@lru_cache(maxsize=8)
def _facts(roots: tuple[str, ...]) -> tuple[TargetFacts, ...]:
    out = []
    for folder, path in _scan(roots):
        declared = {
            name: value
            for name in ("pool_placement", "replica_unit", "instance_label")
            if (value := _declared(str(path), name)) is not None
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
    found = pattern.search(Path(path).read_text(encoding="utf-8"))
    if not found:
        return None
    text = found.group(1)
    try:
        return ast.literal_eval(_COMMENT.sub("", text) if text.startswith("(") else text)
    except (ValueError, SyntaxError):
        return None
