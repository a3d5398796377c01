"""
Promotion state, one JSON file per stack, and the lock that keeps promotions one at a time.

Files live in `<MDEPLOY_HOME>/promotions/`: `<stack>.json` (written atomically: a temporary
file in the same folder, fsync, rename, so a crash leaves the old or the new document, never
half of one) and `<stack>.lock` (created with O_EXCL, holding the owner's pid and host). A
lock whose pid is dead on this host is stale and is taken over; any other lock refuses the
second promotion with who holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdeploy.errors import CloudError, PolicyError

__all__ = [
    "SCHEMA",
    "StackLock",
    "StateStore",
    "now_iso",
]

SCHEMA = 1
_HISTORY = 20  # promotions kept per stack


def now_iso(epoch: float | None = None) -> str:
    """UTC time as ISO 8601 with a Z, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch is None else epoch))


class StateStore:
    """The promotion state of every stack under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, stack: str) -> Path:
        return self.folder / f"{stack}.json"

    def load(self, stack: str) -> dict[str, Any]:
        """The stack's state, or a fresh one; an unreadable file is an error, never reset."""
        path = self.path(stack)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return fresh_state(stack)
        except (OSError, ValueError) as exc:
            raise CloudError(
                f"{path}: promotion state cannot be read ({exc})",
                hint="fix or move the file; it records the last good version for rollback",
            ) from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise CloudError(f"{path}: not a promotion state file of schema {SCHEMA}")
        return data

    def save(self, state: dict[str, Any]) -> None:
        """Write atomically: temp file + fsync + rename in the same folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        state["updated_at"] = now_iso()
        history = state.get("history") or []
        state["history"] = history[-_HISTORY:]
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path(state["stack"]))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def stacks(self) -> list[str]:
        """Stacks with a state file, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def lock(self, stack: str, command: str) -> StackLock:
        return StackLock(self.folder / f"{stack}.lock", stack=stack, command=command)


def fresh_state(stack: str) -> dict[str, Any]:
    """The state of a stack no promotion has touched."""
    return {
        "schema": SCHEMA,
        "stack": stack,
        "target": None,
        "region": None,
        "hourly_usd": None,
        "current": None,
        "last_good": None,
        "promotion": None,
        "history": [],
        "updated_at": None,
    }


class StackLock:
    """An O_EXCL lock file naming its owner; a dead owner's lock (same host) is taken over."""

    def __init__(self, path: Path, *, stack: str, command: str) -> None:
        self.path = Path(path)
        self.stack = stack
        self.command = command
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # second try only after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if self._stale(owner):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                raise PolicyError(
                    f"stack {self.stack}: another {owner.get('command', 'promotion')} is running "
                    f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')}, since "
                    f"{owner.get('started_at', '?')}); refusing to start a second one",
                    hint=f"wait for it to finish; if that process is gone, delete {self.path}",
                ) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "command": self.command,
                        "started_at": now_iso(),
                    },
                    handle,
                )
            self.held = True
            return
        raise PolicyError(f"stack {self.stack}: could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def _owner(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _stale(owner: dict[str, Any]) -> bool:
        """True when the owner ran on this host and its pid no longer exists."""
        pid = owner.get("pid")
        if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def __enter__(self) -> StackLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked(store: StateStore, stack: str, command: str) -> Iterator[StackLock]:
    """Hold the stack's lock for the block."""
    lock = store.lock(stack, command)
    with lock:
        yield lock
