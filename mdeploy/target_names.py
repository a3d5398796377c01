"""
The names the registry of targets answers to, read as data by the layers below it.

`spec/` and `catalog/` sit under `targets/` in the layer order, so they may not import it;
yet a spec's `placement.clouds` and a catalog's target column must be checked against the
targets that exist. This leaf module reads each `targets/<folder>/target.py` as text (no
import: no SDK, no pydantic) and returns the literal `catalog_targets` its Target class
declares. `mdeploy.targets` (the registry) imports the same classes; a test checks that both
agree.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["placement_names", "target_folders"]

_DEFAULT_ROOT = str(Path(__file__).resolve().parent / "targets")
# `catalog_targets: ClassVar[tuple[str, ...]] = ("coreweave", "kubernetes")` in a class body.
# A regex, not ast.parse: `mdeploy --help` reads these for its help text and must stay fast.
_DECLARATION = re.compile(r"^\s+catalog_targets\b[^=\n]*=\s*\(([^)]*)\)", re.MULTILINE)
_QUOTED = re.compile(r"[\"']([a-z0-9][a-z0-9-]*)[\"']")


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


def placement_names() -> tuple[str, ...]:
    """Every catalog/placement target name the targets deploy (sorted, no duplicates)."""
    names: set[str] = set()
    for folder, path in target_folders().items():
        names.update(_declared(str(path)) or (folder,))
    return tuple(sorted(names))


@lru_cache(maxsize=32)
def _declared(path: str) -> tuple[str, ...]:
    """The literal `catalog_targets = (...)` of the Target class in `path`, () if none."""
    found = _DECLARATION.search(Path(path).read_text(encoding="utf-8"))
    return tuple(_QUOTED.findall(found.group(1))) if found else ()
