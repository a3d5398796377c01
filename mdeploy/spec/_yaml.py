"""
Read one YAML spec file into a located tree: every value remembers its line and column.

The contract is safety first, then precision. A spec may come from a pull request or a
downloaded example, so hostile input is refused before it costs anything: files over 1 MiB
(checked before reading), binary files, invalid UTF-8, more than one document, nesting
deeper than 64, alias bombs (more than 100 aliases, or an expanded tree of more than 20k
nodes, counted while composing, before anything is built), recursive aliases and any tag
other than YAML's plain scalar, sequence and mapping types (no `!!python/...`). Duplicate
keys and non-string keys are errors, not silent overwrites.

Nothing here knows the spec's fields: it returns `Node` trees, and every problem as an
`Issue` inside a `SpecError`. Values are never echoed in messages.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, StreamEndEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.reader import ReaderError
from yaml.resolver import Resolver

from mdeploy.errors import InputError, Issue, SpecError

try:  # libyaml parses about 5x faster; the composer stays in Python so we can count.
    from yaml._yaml import CParser as _Parser

    _PURE = False
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.parser import Parser as _Parser

    _PURE = True

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_FLOAT",
    "MAX_INT",
    "MAX_NODES",
    "Node",
    "read_tree",
]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_NODES = 20_000  # a real spec holds a few hundred; parsing 20k costs ~0.1 s
MAX_INT = 2**63 - 1  # int64: what every engine flag and cloud API takes
MAX_FLOAT = 1e15  # prices, sizes and ratios are far below; × 730 h × replicas stays finite

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = _TAG + "timestamp"  # kept as text: revisions and versions may look like dates
_MERGE = _TAG + "merge"
_SAFE = SafeConstructor()
_PLAIN_BOOLS = {"true", "false"}


@dataclass
class Node:
    """
    One value of the document and where it is written.

    `value` is a scalar, a `dict[str, Node]` or a `list[Node]`. `line`/`column` (1-based)
    point at the most useful place: the key for a mapping entry whose value is a
    collection, the value itself for a scalar or a list item. `key_at` is where the key of
    a mapping entry is (for "unknown field"). `note` carries a hint that only the source
    text can give (an unquoted `NO` read as a boolean).
    """

    value: Any
    line: int
    column: int
    note: str | None = field(default=None, compare=False)
    key_at: tuple[int, int] | None = field(default=None, compare=False)

    def plain(self) -> Any:
        """Return the value as plain dicts, lists and scalars, for pydantic."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


class _Refused(Exception):
    """A limit was hit while composing; carries the YAML mark to report."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _CountingComposer(Composer):
    """Compose nodes while bounding depth, aliases and the expanded size of the tree."""

    def _init_limits(self) -> None:
        self._depth = 0
        self._aliases = 0
        self._expanded = 0
        self._size: dict[int, int] = {}
        self._height: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            return self._compose_alias(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        before = self._expanded
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._add(1, node.start_mark)
        self._size[id(node)] = self._expanded - before
        self._height[id(node)] = 1 + max(
            (self._height.get(id(c), 1) for c in _children(node)), default=0
        )
        return node

    def _compose_alias(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise _Refused(f"more than {MAX_ALIASES} aliases (possible alias bomb)", mark)
        node = super().compose_node(parent, index)
        if id(node) not in self._size:
            raise _Refused("recursive alias: an anchor refers to itself", mark)
        if self._depth + self._height[id(node)] > MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH} levels once aliases expand", mark)
        self._add(self._size[id(node)], mark)
        return node

    def _add(self, count: int, mark: Any) -> None:
        self._expanded += count
        if self._expanded > MAX_NODES:
            why = " once aliases expand (possible alias bomb)" if self._aliases else ""
            raise _Refused(f"more than {MAX_NODES} values{why}; a spec has a few hundred", mark)


def _children(node: Any) -> list[Any]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


if _PURE:  # pragma: no cover
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, _Parser, _CountingComposer, Resolver):
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            _Parser.__init__(self)
            _CountingComposer.__init__(self)
            Resolver.__init__(self)
            self._init_limits()

else:

    class _Loader(_CountingComposer, _Parser, Resolver):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            _CountingComposer.__init__(self)
            Resolver.__init__(self)
            self._init_limits()


def read_tree(path: Path) -> Node:
    """Read `path` and return its located tree; raise SpecError on anything refused."""
    text = _read_text(path)
    node = _compose(path, text)
    return _Builder(str(path)).build(node)


def _issue(
    path: Path | str, message: str, line: int | None = None, column: int | None = None
) -> SpecError:
    return SpecError([Issue(str(path), line, column, "", message)])


def _read_text(path: Path) -> str:
    """Read at most MAX_BYTES (+1 to notice more) of a regular file; decode strict UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever; the
        # fstat below then refuses it (and devices, directories) before anything is read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file", hint="check the path, or write a starter with `mdeploy init`"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputError(
            f"{path}: not a regular file ({_file_kind(info.st_mode)})",
            hint="pass the path of a spec file; pipes, devices and folders are not read",
        )
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_BYTES:
            raise _issue(path, f"file is larger than {MAX_BYTES // 1024} KiB; a spec is a few KiB")
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _issue(path, f"file is larger than {MAX_BYTES // 1024} KiB; a spec is a few KiB")
    nul = data.find(b"\0")
    if nul >= 0:
        line, col = _position(data, nul)
        raise _issue(path, "binary file (NUL byte); a spec is UTF-8 YAML text", line, col)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        raise _issue(path, "not valid UTF-8 text; save the spec as UTF-8", line, col) from None


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _compose(path: Path, text: str) -> Any:
    """Compose exactly one document, refusing limits while composing."""
    loader = _Loader(text)
    try:
        loader.get_event()  # StreamStart
        if loader.check_event(StreamEndEvent):
            raise _issue(path, "empty file; run `mdeploy init` for a starter spec", 1, 1)
        node = loader.compose_document()
        if not loader.check_event(StreamEndEvent):
            mark = loader.get_event().start_mark
            raise _issue(path, "more than one YAML document; a spec file holds one", *_lc(mark))
        return node
    except _Refused as exc:
        raise _issue(path, exc.message, *_lc(exc.mark)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in problem:  # PyYAML >= 6.0.4 stops deep flow itself
            raise _issue(path, f"nesting deeper than {MAX_DEPTH} levels", *_lc(mark)) from None
        if exc.context and exc.problem and exc.context_mark is not None:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise _issue(path, f"YAML syntax: {problem}", *_lc(mark)) from None
    except ReaderError as exc:  # a control character: position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise _issue(path, f"YAML: {exc.reason}", line, column) from None
    except yaml.YAMLError as exc:
        raise _issue(path, f"YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()


def _lc(mark: Any) -> tuple[int | None, int | None]:
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


class _Builder:
    """Turn composed nodes into `Node` trees, collecting every structural issue."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[Issue] = []

    def build(self, node: Any) -> Node:
        root = self._value(node, (), node)
        if self.issues:  # an anchor used twice would report its problems twice
            raise SpecError(list(dict.fromkeys(self.issues)))
        if not isinstance(root.value, dict):
            raise _issue(
                self.file, "the top level must be a mapping (apiVersion: ..., kind: ...)", 1, 1
            )
        return root

    def _fail(self, at: Any, path: tuple[Any, ...], message: str) -> Node:
        line, col = _lc(at.start_mark)
        self.issues.append(Issue(self.file, line, col, _dotted(path), message))
        return Node(None, line or 1, col or 1)

    def _value(self, node: Any, path: tuple[Any, ...], at: Any) -> Node:
        """Build `node`; `at` is the node to point at (the key, for collections in mappings)."""
        line, col = _lc(at.start_mark)
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                return self._fail(node, path, f"unsupported tag {node.tag!r}; plain mappings only")
            return Node(self._mapping(node, path), line or 1, col or 1)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                return self._fail(node, path, f"unsupported tag {node.tag!r}; plain lists only")
            items = [self._value(item, (*path, i), item) for i, item in enumerate(node.value)]
            return Node(items, line or 1, col or 1)
        return self._scalar(node, path)

    def _scalar(self, node: ScalarNode, path: tuple[Any, ...]) -> Node:
        line, col = _lc(node.start_mark)
        if node.tag == _TIMESTAMP:
            return Node(node.value, line or 1, col or 1)
        if node.tag not in _SCALAR_TAGS:
            return self._fail(node, path, f"unsupported tag {node.tag!r}; only plain YAML values")
        try:
            value = _SAFE.yaml_constructors[node.tag](_SAFE, node)
        except (ValueError, yaml.YAMLError):
            return self._fail(node, path, f"not a valid {node.tag.rsplit(':', 1)[-1]}")
        problem = _number_problem(value)
        if problem:
            return self._fail(node, path, problem)
        note = None
        if isinstance(value, bool) and not node.style and node.value.lower() not in _PLAIN_BOOLS:
            note = f'YAML reads unquoted {node.value} as a boolean; quote it: "{node.value}"'
        return Node(value, line or 1, col or 1, note)

    def _mapping(self, node: MappingNode, path: tuple[Any, ...]) -> dict[str, Node]:
        """Explicit keys, duplicates refused; `<<` merge keys applied underneath them."""
        merged: dict[str, Node] = {}
        explicit: dict[str, Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self._merge_into(merged, value_node, path)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in explicit:
                self._fail(
                    key_node, (*path, key), f"duplicate key (first at line {first_line[key]})"
                )
                continue
            at = key_node if isinstance(value_node, MappingNode | SequenceNode) else value_node
            explicit[key] = self._value(value_node, (*path, key), at)
            explicit[key].key_at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            first_line[key] = key_node.start_mark.line + 1
        return {**merged, **explicit}

    def _key(self, key_node: Any, path: tuple[Any, ...]) -> str | None:
        if not isinstance(key_node, ScalarNode):
            self._fail(key_node, path, "mapping keys must be plain text")
            return None
        if key_node.tag != _TAG + "str":
            self._fail(key_node, path, f"key {key_node.value!r} is not text; quote it")
            return None
        return key_node.value

    def _merge_into(self, merged: dict[str, Node], value_node: Any, path: tuple[Any, ...]) -> None:
        """YAML merge key: earlier sources win, explicit keys win over all of them."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                self._fail(source, path, "'<<' merges mappings only")
                continue
            merged.update(self._mapping(source, path))


def _number_problem(value: Any) -> str | None:
    """
    Refuse numbers no spec field can mean: they only overflow later.

    `.inf`/`.nan` would reach `--json` as `Infinity`/`NaN` (not JSON); integers beyond 64
    bits and floats beyond ±MAX_FLOAT overflow when converted or multiplied (prices × hours
    × replicas). Every real value is many orders of magnitude inside these limits.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return "not a finite number; .inf and .nan are not allowed"
        if abs(value) > MAX_FLOAT:
            return f"number too large (the limit is {MAX_FLOAT:g})"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return "integer too large (the limit is 2**63 - 1)"
    return None


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)
