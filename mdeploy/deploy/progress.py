"""
Streaming progress for stack operations: Pulumi engine events → what a person or CI log sees.

`Progress` is the `on_event` callback given to the Automation API. On a terminal it keeps a
Rich live table (one row per resource: operation, type, name, state, seconds); in CI (no TTY,
or CI=true) it prints one plain line per event so logs stay readable. It also tallies the
operations for the final summary, and never prints a resource's inputs or outputs (they may
hold secrets): only operation, type, name and the engine's own diagnostics.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

__all__ = [
    "DESTRUCTIVE_OPS",
    "Progress",
    "ResourceRow",
    "clean_message",
    "interactive_terminal",
]

# Operations that remove or recreate a live resource: an `up` that plans one asks first.
DESTRUCTIVE_OPS = frozenset({"delete", "replace", "create-replacement", "delete-replaced"})
_SYMBOL = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "replace": "+-",
    "create-replacement": "++",
    "delete-replaced": "--",
    "same": " ",
    "read": ">",
    "refresh": "r",
}
_COLOR = {"+": "green", "~": "yellow", "-": "red", "+-": "magenta", "++": "magenta", "--": "red"}
# The engine sends diagnostics with `color: "raw"`: Pulumi colour directives such as
# `<{%reset%}>` or `<{%fg 1%}>` stay in the text whatever --color says (older CLIs also
# left ANSI escapes in it).
_DIRECTIVES = re.compile(r"<\{%[^%]*%\}>|\x1b\[[0-9;?]*[ -/]*[@-~]")
_TRACEBACK = "Traceback (most recent call last):"


def clean_message(message: str) -> str:
    """
    An engine diagnostic as a person should read it: no colour directives, no traceback.

    A failing inline program reaches the engine as "python inline source runtime error: ERR"
    followed by the Python traceback; ERR is kept, the traceback is not.

    >>> clean_message("<{%reset%}>creating failed: quota<{%reset%}>\\n")
    'creating failed: quota'
    """
    text = _DIRECTIVES.sub("", str(message))
    text = text.split(_TRACEBACK, 1)[0]
    return text.strip()


def interactive_terminal(stream: Any = None) -> bool:
    """A person is watching: stdout/stderr is a TTY and not CI (CI=true forces plain lines)."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return False
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass
class ResourceRow:
    """One resource's line in the progress table."""

    op: str
    type: str
    name: str
    state: str = "running"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class Progress:
    """An `on_event` handler: live table on a TTY, one line per event otherwise."""

    def __init__(self, console: Console, *, live: bool | None = None, title: str = "") -> None:
        self.console = console
        self.live_mode = interactive_terminal(console.file) if live is None else live
        self.title = title
        self.rows: dict[str, ResourceRow] = {}
        self.ops: Counter[str] = Counter()
        self.errors: list[str] = []
        self.summary: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._live: Live | None = None

    # -- context: start/stop the live table -------------------------------------------------
    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None

    @property
    def live_active(self) -> bool:
        """The live table is on screen and refreshing."""
        return self._live is not None and self._live.is_started

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """
        Take the live table off the screen while a question is asked, then bring it back.

        A refreshing Rich Live display redraws over a prompt and hides what is typed.
        """
        live = self._live
        if live is None or not live.is_started:
            yield
            return
        live.stop()
        try:
            yield
        finally:
            live.start()

    # -- the callback -------------------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        """Handle one `pulumi.automation.EngineEvent` (called from the event-log thread)."""
        with self._lock:
            if event.resource_pre_event is not None:
                self._pre(event.resource_pre_event.metadata)
            elif event.res_outputs_event is not None:
                self._done(event.res_outputs_event.metadata, "done")
            elif event.res_op_failed_event is not None:
                self._done(event.res_op_failed_event.metadata, "failed")
            elif event.diagnostic_event is not None:
                self._diagnostic(event.diagnostic_event)
            elif event.summary_event is not None:
                self._summary(event.summary_event)
            if self._live is not None:
                self._live.update(self._table())

    @property
    def destructive(self) -> list[str]:
        """'op type name' of every planned delete/replace (for the confirmation prompt)."""
        return [f"{r.op} {r.type} {r.name}" for r in self.rows.values() if r.op in DESTRUCTIVE_OPS]

    def counts(self) -> dict[str, int]:
        """Operations by kind: the engine's summary when it came, else our own tally."""
        return dict(self.summary) if self.summary is not None else dict(self.ops)

    # -- event kinds ----------------------------------------------------------------------------
    def _pre(self, meta: Any) -> None:
        op = _op(meta)
        if meta.type == "pulumi:pulumi:Stack" or meta.type.startswith("pulumi:providers:"):
            return
        row = self.rows.get(meta.urn)
        if row is not None and row.op in DESTRUCTIVE_OPS and op in DESTRUCTIVE_OPS:
            row.op = "replace"  # create-replacement then delete-replaced: one replace
        else:
            self.rows[meta.urn] = ResourceRow(op, meta.type, _name(meta.urn))
        self.ops[op] += 1
        if not self.live_mode and op != "same":
            self._line(op, meta.type, _name(meta.urn), "…")

    def _done(self, meta: Any, state: str) -> None:
        row = self.rows.get(meta.urn)
        if row is None:
            return
        row.state, row.ended = state, time.monotonic()
        if not self.live_mode and (row.op != "same" or state == "failed"):
            self._line(row.op, row.type, row.name, f"{state} {row.seconds:.1f}s")

    def _diagnostic(self, diag: Any) -> None:
        severity = getattr(diag, "severity", "info")
        message = clean_message(getattr(diag, "message", "") or "")
        if severity not in {"error", "warning"} or not message:
            return
        if severity == "error":
            self.errors.append(message)
        style = "red" if severity == "error" else "yellow"
        where = _name(diag.urn) if getattr(diag, "urn", None) else "stack"
        if self._live is not None:
            self._live.console.print(f"[{style}]{severity}[/] {escape(where)}: {escape(message)}")
        else:
            self.console.print(f"[{style}]{severity}[/] {escape(where)}: {escape(message)}")

    def _summary(self, summary: Any) -> None:
        changes = getattr(summary, "resource_changes", None) or {}
        self.summary = {str(getattr(k, "value", k)): int(v) for k, v in changes.items()}

    # -- rendering ------------------------------------------------------------------------------
    def _line(self, op: str, typ: str, name: str, state: str) -> None:
        symbol = _SYMBOL.get(op, "?")
        self.console.print(
            f"[{_COLOR.get(symbol, 'white')}]{symbol:>2}[/] {op:<18} {escape(typ)} "
            f"[bold]{escape(name)}[/] {state}",
            soft_wrap=True,
        )

    def _table(self) -> Table:
        table = Table(title=self.title or None, expand=False, show_edge=False)
        for col in ("", "operation", "type", "name", "state", "s"):
            table.add_column(col, justify="right" if col == "s" else "left")
        for row in self.rows.values():
            symbol = _SYMBOL.get(row.op, "?")
            state = {"done": "[green]done[/]", "failed": "[red]failed[/]"}.get(
                row.state, "[cyan]running[/]"
            )
            table.add_row(
                f"[{_COLOR.get(symbol, 'white')}]{symbol}[/]",
                row.op,
                escape(row.type),
                escape(row.name),
                state,
                f"{row.seconds:.0f}",
            )
        return table


def _op(meta: Any) -> str:
    op = getattr(meta, "op", "")
    return str(getattr(op, "value", op))


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]
