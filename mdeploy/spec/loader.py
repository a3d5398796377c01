"""
Load a spec file into a validated `Deployment`, reporting every problem with file:line.

`load_spec(path, env)` reads the YAML safely (see `_yaml`), merges the chosen environment
overlay (see `_overlay`), refuses credentials pasted into engine_args, then validates with
pydantic. All problems of a file are reported at once, as one `SpecError`, each with the
line and column of the value (or of the parent mapping, for a missing field), the dotted
field path in the spec's own key names, and pydantic's message. Pydantic's `input` is
never used: a value may be a secret.

The result, `LoadedSpec`, keeps the located tree so later layers (planner, policy) can
point their own findings at a line: `loaded.issue("placement.residency", "...")`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mdeploy.errors import Issue, SpecError
from mdeploy.spec._overlay import apply_environment, environment_names
from mdeploy.spec._secrets import find_pasted_secrets, redact
from mdeploy.spec._yaml import Node, read_tree
from mdeploy.spec.models import Deployment

__all__ = [
    "PROD_ENV",
    "FieldPath",
    "LoadedSpec",
    "list_environments",
    "load_from_tree",
    "load_spec",
]

PROD_ENV = "prod"
FieldPath = str | Sequence[str | int]

# Short nouns for pydantic's type errors, to merge the one-per-branch errors of a union.
_TYPE_NOUNS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "none_required": "null",
    "dict_type": "a mapping",
    "list_type": "a list",
}
_NOTE_TYPES = {"string_type", "literal_error", "string_pattern_mismatch"}


@dataclass(frozen=True)
class LoadedSpec:
    """
    A validated spec and where it came from.

    `strict` is true for the `prod` environment or `guardrails: strict`: the prod
    guardrails apply. `base_dir` is the spec's folder; relative paths in the spec
    (a local model source) are relative to it.
    """

    spec: Deployment
    path: Path
    env: str | None
    tree: Node = field(repr=False, compare=False)

    @property
    def strict(self) -> bool:
        return self.env == PROD_ENV or self.spec.guardrails == "strict"

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def locate(self, path: FieldPath) -> tuple[int, int]:
        """
        Return the (line, column) of a field, or of its closest written ancestor.

        `path` is dotted (`"serving.replicas.max"`, list items by index
        `"placement.kubernetes.pools.0.gpu"`) or a sequence of keys and indexes.
        """
        node = _deepest(self.tree, _split(path))[0]
        return node.line, node.column

    def issue(self, path: FieldPath, message: str) -> Issue:
        """Build an Issue about `path`, located in the spec file."""
        line, column = self.locate(path)
        return Issue(str(self.path), line, column, _dotted(_split(path)), message)


def load_spec(path: Path, env: str | None = None) -> LoadedSpec:
    """Read, merge `env` over the base and validate; raise SpecError listing every issue."""
    path = Path(path)
    return load_from_tree(read_tree(path), path, env)


def load_from_tree(tree: Node, path: Path, env: str | None = None) -> LoadedSpec:
    """
    Merge `env` over an already-read tree and validate.

    `validate --all-envs` reads the file once and checks every overlay against the same
    tree: reading it per overlay made the work grow with the square of the overlay count.
    """
    path = Path(path)
    if env is not None:
        tree = apply_environment(tree, env, path)
    return _validate(tree, path, env)


def list_environments(path: Path) -> list[str]:
    """Names of the spec's environment overlays, in file order (the file must parse)."""
    return environment_names(read_tree(Path(path)))


def _validate(tree: Node, path: Path, env: str | None) -> LoadedSpec:
    file = str(path)
    issues = find_pasted_secrets(tree, file)
    spec = None
    try:
        # by_name=False: only the spec's own key names (apiVersion, not api_version).
        spec = Deployment.model_validate(tree.plain(), by_alias=True, by_name=False)
    except ValidationError as exc:
        # Where a credential was found, that is the problem to report, not its type.
        flagged = {(i.line, i.column) for i in issues}
        issues += [i for i in _issues(exc, tree, file) if (i.line, i.column) not in flagged]
    if issues or spec is None:
        # A message may quote the input (a flag name, a residency code): never a credential.
        issues = [replace(i, field=redact(i.field), message=redact(i.message)) for i in issues]
        raise SpecError(sorted(dict.fromkeys(issues), key=_order), hint=_hint(env))
    return LoadedSpec(spec=spec, path=path, env=env, tree=tree)


def _hint(env: str | None) -> str:
    where = f" with overlay {env!r}" if env else ""
    return f"fix the fields listed{where}; `mdeploy schema` prints every field and its type"


def _order(issue: Issue) -> tuple[int, int]:
    return (issue.line or 0, issue.column or 0)


def _issues(exc: ValidationError, tree: Node, file: str) -> list[Issue]:
    """One Issue per located problem; union branch errors folded into one."""
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(err["loc"])
        node, depth = _deepest(tree, loc)
        # Past the written tree: a missing field keeps its name, a union branch tag is cut.
        key = loc if err["type"] == "missing" else loc[:depth]
        grouped.setdefault(key, []).append({**err, "node": node})
    return [_to_issue(loc, errs, file) for loc, errs in grouped.items()]


def _to_issue(loc: tuple[Any, ...], errs: list[dict[str, Any]], file: str) -> Issue:
    first = errs[0]
    node: Node = first["node"]
    if len(errs) > 1 and all(e["type"] in _TYPE_NOUNS for e in errs):
        nouns = list(dict.fromkeys(_TYPE_NOUNS[e["type"]] for e in errs))
        message = "Input should be " + ", ".join(nouns[:-1]) + " or " + nouns[-1]
    else:
        message = "; ".join(dict.fromkeys(_message(e, loc) for e in errs))
    if node.note and any(e["type"] in _NOTE_TYPES for e in errs):
        message += f" ({node.note})"
    line, column = node.line, node.column
    if first["type"] == "extra_forbidden" and node.key_at is not None:
        line, column = node.key_at
    return Issue(file, line, column, _dotted(loc), message)


def _message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        return _unknown_field(loc)
    if kind == "missing":
        return "required field is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _unknown_field(loc: tuple[Any, ...]) -> str:
    known = _fields_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    if known:
        return "unknown field; expected one of: " + ", ".join(known)
    return "unknown field"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The key names allowed by the model at `loc` ([] when it is not a model)."""
    tp: Any = Deployment
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {f.alias or name: f for name, f in tp.model_fields.items()}
            if part not in fields:
                return []
            tp = fields[part].annotation
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional to reach the model or container type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _deepest(tree: Node, path: Sequence[Any]) -> tuple[Node, int]:
    """Follow `path` as far as the written tree goes; return that node and the depth reached."""
    node = tree
    for depth, part in enumerate(path):
        child = _child(node, part)
        if child is None:
            return node, depth
        node = child
    return node, len(path)


def _child(node: Node, part: Any) -> Node | None:
    if isinstance(node.value, dict):
        return node.value.get(str(part))
    if isinstance(node.value, list):
        index = _index(part)
        if index is not None and 0 <= index < len(node.value):
            return node.value[index]
    return None


def _index(part: Any) -> int | None:
    if isinstance(part, int):
        return part
    return int(part) if isinstance(part, str) and part.isdigit() else None


def _split(path: FieldPath) -> tuple[Any, ...]:
    return tuple(path.split(".")) if isinstance(path, str) else tuple(path)


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path)
