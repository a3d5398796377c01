"""
Strict `mdeploy:*` Pulumi stack settings, shared by the targets.

Each target declares its keys once, as a pydantic model in `targets/<cloud>/settings.py`:
the field's alias is the camelCase stack key, its description is the documentation (the
tables in the targets' docstrings are rendered from it, and a test keeps them equal), its
type and bounds are the check. `extra="forbid"`: a key the target does not know is an
InputError with "did you mean", instead of being silently ignored. Stack config arrives as
text; the types below read it ("true"/"yes"/"1", JSON or comma lists, whole numbers) and an
error names the key, never echoes the value (it may be a secret).
"""

from __future__ import annotations

import difflib
import json
import textwrap
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from mdeploy.errors import InputError

__all__ = [
    "COMMON_KEYS",
    "Flag",
    "StackSettings",
    "TextList",
    "Whole",
    "settings_table",
    "stack_values",
]

# Keys every stack may carry whatever its target: `mdeploy:imageRepository` is read by `up`
# (deploy/preflight.py IMAGE_REPOSITORY_KEY); spec, target and env by the plain-Pulumi
# project (stacks/__main__.py).
COMMON_KEYS = ("imageRepository", "spec", "target", "env")
NAMESPACE = "mdeploy:"
_TEXT_WIDTH = 96  # docstring tables, so that the modules stay within 100 columns


def _flag(value: Any) -> Any:
    """true/1/yes or false/0/no, case-insensitive; a bool passes as is."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _whole(value: Any) -> Any:
    """A whole number written as text (or an int); '1.5' and 'ten' are refused."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError("expected a whole number")
    return int(text)


def _text_list(value: Any) -> Any:
    """A JSON list of strings, or comma-separated text; blanks dropped."""
    if isinstance(value, list | tuple):
        items: Any = list(value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("not a JSON list") from None
        else:
            items = text.split(",")
    if not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of strings")
    return tuple(i.strip() for i in items if i.strip())


Flag = Annotated[bool, BeforeValidator(_flag)]
Whole = Annotated[int, BeforeValidator(_whole)]
TextList = Annotated[tuple[str, ...], BeforeValidator(_text_list)]


class StackSettings(BaseModel):
    """Base of the per-cloud settings models: aliases are the stack keys, unknown keys fail."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True
    )
    target_name: ClassVar[str] = ""

    @classmethod
    def stack_keys(cls) -> list[str]:
        """The stack keys (without `mdeploy:`) this target reads, in declaration order."""
        return [field.alias or name for name, field in cls.model_fields.items()]

    @classmethod
    def from_stack(cls, values: Mapping[str, Any]) -> Self:
        """
        Parse stack config: keys with or without `mdeploy:`; other namespaces, common keys
        and empty values are skipped. InputError names the key (with "did you mean").
        """
        clean: dict[str, Any] = {}
        for key, value in values.items():
            bare = key.removeprefix(NAMESPACE)
            if ":" in bare or bare in COMMON_KEYS or value is None or str(value).strip() == "":
                continue
            clean[bare] = value
        known = cls.stack_keys()
        for key in sorted(clean):
            if key not in known:
                hint = _suggest(key, known)
                raise InputError(f"unknown stack config {NAMESPACE}{key}", hint=hint)
        try:
            return cls.model_validate(clean)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "(settings)"
            message = _range(cls, where) if "_than" in error["type"] else None
            message = message or str(error["msg"]).removeprefix("Value error, ")
            raise InputError(f"{NAMESPACE}{where}: {message}") from None


def _range(model: type[StackSettings], key: str) -> str | None:
    """'allowed range is 1–50' for a bounded field (its Ge/Le metadata), else None."""
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
            high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
            if low is not None and high is not None:
                return f"allowed range is {low}–{high}"
            if low is not None:
                return f"must be at least {low}"
    return None


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == key.lower()]
    listing = ", ".join(known)
    if close:
        return f"did you mean {NAMESPACE}{close[0]}? (known keys: {listing})"
    return f"known keys: {listing}"


def settings_table(model: type[StackSettings], *, markdown: bool = True) -> str:
    """
    The model's keys and descriptions as a table: the documentation of the stack keys.

    Markdown for README and docs; `markdown=False` gives the plain-text table the settings
    modules carry in their docstrings (wrapped to fit 100 columns, checked by a test).
    """
    rows = []
    for name, field in model.model_fields.items():
        rows.append((field.alias or name, " ".join((field.description or "").split())))
    if markdown:
        lines = ["| key | description |", "|---|---|"]
        lines += [f"| `{NAMESPACE}{k}` | {d.replace('|', chr(92) + '|')} |" for k, d in rows]
        return "\n".join(lines)
    width = max(len(k) for k, _ in rows) + 2
    rule = "=" * (width - 2) + "  " + "=" * (_TEXT_WIDTH - width)
    lines = [rule]
    for key, text in rows:
        wrapped = textwrap.wrap(text, _TEXT_WIDTH - width) or [""]
        lines.append(f"{key:<{width}}{wrapped[0]}".rstrip())
        lines += [" " * width + more for more in wrapped[1:]]
    lines.append(rule)
    return "\n".join(lines)


def stack_values() -> dict[str, Any]:
    """Every `mdeploy:*` key of the running Pulumi program's stack config."""
    from pulumi.runtime.config import CONFIG, get_config_env

    values: dict[str, Any] = dict(get_config_env() or {})
    values.update(CONFIG.get())
    return {k: v for k, v in values.items() if k.startswith(NAMESPACE)}
