"""
Parsers for `mdeploy:*` Pulumi stack config values, shared by the targets.

Stack config arrives as text; each parser names the key in its error so a typo in
`mdeploy up -c KEY=VALUE` or a stack file points straight at the line to fix.
"""

from __future__ import annotations

import json

from mdeploy.errors import InputError

__all__ = ["config_bool", "config_int", "config_list"]


def config_bool(text: str, key: str) -> bool:
    """true/1/yes or false/0/no/empty, case-insensitive."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise InputError(f"mdeploy:{key} = {text!r}: expected true or false")


def config_int(text: str, key: str, low: int, high: int) -> int:
    """A whole number within [low, high]."""
    try:
        value = int(text.strip())
    except ValueError:
        raise InputError(f"mdeploy:{key} = {text!r}: expected a whole number") from None
    if not low <= value <= high:
        raise InputError(f"mdeploy:{key} = {value}: allowed range is {low}–{high}")
    return value


def config_list(text: str, key: str) -> tuple[str, ...]:
    """A JSON list of strings, or comma-separated text; blanks dropped."""
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise InputError(f"mdeploy:{key}: not a JSON list") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InputError(f"mdeploy:{key}: expected a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    return tuple(i.strip() for i in text.split(",") if i.strip())
