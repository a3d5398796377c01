"""
Environment overlays: `environments.<name>` deep-merged over the base spec.

Rules, chosen so an overlay reads like a diff of the base:
- mappings merge key by key, recursively;
- lists and scalars replace the base value whole (a list of clouds is not appended to);
- `null` removes the key, so the field falls back to its default;
- the `environments` key is dropped from the merged document.

Merging works on located `Node` trees, so a value that came from the overlay keeps the
overlay's line and an error it causes is reported there. A mapping the overlay touched is
located at the overlay too: whatever goes wrong inside it, the overlay changed it last.
"""

from __future__ import annotations

from pathlib import Path

from mdeploy.errors import InputError, Issue, SpecError
from mdeploy.spec._yaml import Node

__all__ = ["ENVIRONMENTS", "apply_environment", "environment_names"]

ENVIRONMENTS = "environments"


def environment_names(root: Node) -> list[str]:
    """Return the overlay names declared in the spec, in file order."""
    envs = root.value.get(ENVIRONMENTS)
    if envs is None or not isinstance(envs.value, dict):
        return []
    return list(envs.value)


def apply_environment(root: Node, env: str, file: Path) -> Node:
    """Return the base spec with overlay `env` merged over it."""
    names = environment_names(root)
    if env not in names:
        available = ", ".join(names) if names else "none: the spec has no environments section"
        raise InputError(
            f"unknown environment {env!r} in {file}",
            hint=f"available environments: {available}",
        )
    overlay = root.value[ENVIRONMENTS].value[env]
    _check_overlay(overlay, env, file)
    base = Node({k: v for k, v in root.value.items() if k != ENVIRONMENTS}, root.line, root.column)
    # The document itself stays at line 1: a missing apiVersion is not the overlay's doing.
    return Node(merge(base, overlay).value, root.line, root.column)


def _check_overlay(overlay: Node, env: str, file: Path) -> None:
    field = f"{ENVIRONMENTS}.{env}"
    if not isinstance(overlay.value, dict):
        raise SpecError(
            [Issue(str(file), overlay.line, overlay.column, field, "an overlay must be a mapping")]
        )
    nested = overlay.value.get(ENVIRONMENTS)
    if nested is not None:
        message = "overlays cannot declare environments of their own"
        raise SpecError(
            [Issue(str(file), nested.line, nested.column, f"{field}.{ENVIRONMENTS}", message)]
        )


def merge(base: Node, overlay: Node) -> Node:
    """
    Deep-merge `overlay` over `base` (both unchanged) and return the result.

    `merge({a: {b: 1, c: 2}}, {a: {c: 3, b: null}})` gives `{a: {c: 3}}`.
    """
    if not (isinstance(base.value, dict) and isinstance(overlay.value, dict)):
        return overlay
    merged = dict(base.value)
    for key, value in overlay.value.items():
        if value.value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return Node(merged, overlay.line, overlay.column)
