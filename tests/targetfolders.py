"""A throwaway target folder joined to the registry for one test (see docs/adding-a-target.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mdeploy.targets
from mdeploy.targets import refresh


@contextmanager
def joined_target_root(root: Path, name: str) -> Iterator[str]:
    """
    `root` (a `targets/`-like folder holding `name/target.py`) searched by the registry until
    the block ends; then the folder's modules are forgotten and the registry rescans.
    """
    saved = list(mdeploy.targets.__path__)
    mdeploy.targets.__path__.append(str(root))
    refresh()
    try:
        yield name
    finally:
        mdeploy.targets.__path__[:] = saved
        for module in [m for m in sys.modules if m.startswith(f"mdeploy.targets.{name}")]:
            del sys.modules[module]
        refresh()
