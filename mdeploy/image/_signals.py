"""
SIGTERM (how CI cancels a job) and SIGINT for the commands that run long children.

`on_sigterm(state)` turns SIGTERM into `Terminated` (exit 143) in the main thread, after the
children it tracks were stopped: each gets SIGINT (the Pulumi CLI then cancels gracefully:
operations in flight finish, the state is written), and is killed if it has not exited after
a grace period (MDEPLOY_TERM_GRACE_S, default 8 s, under the 10 s most CI runners wait before
SIGKILL). Raising unwinds every `with`/`finally` on the way, so temporary registry auth files
are deleted, and `subprocess.run` kills the skopeo it was waiting for. The message says
what state was left, from the `state()` callback of the operation.

Tracked children are started in their own session, so a terminal's Ctrl-C reaches only
mdeploy, which forwards exactly one SIGINT per SIGINT it gets: the same behaviour whether
the signal came from a terminal or was sent to the mdeploy process alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from mdeploy.errors import MdeployError

__all__ = [
    "EXIT_TERMINATED",
    "Terminated",
    "forward",
    "on_sigterm",
    "stop_children",
    "track",
]

EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells and CI runners report
_CHILDREN: list[subprocess.Popen[Any]] = []
_LOCK = threading.Lock()


class Terminated(MdeployError):
    """SIGTERM arrived: children stopped, temporary files removed (exit 143)."""

    exit_code = EXIT_TERMINATED


def track(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Remember a child so that a signal can be forwarded to it; returns it."""
    with _LOCK:
        _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]
        _CHILDREN.append(proc)
    return proc


def _alive() -> list[subprocess.Popen[Any]]:
    with _LOCK:
        return [p for p in _CHILDREN if p.poll() is None]


def forward(signum: int = signal.SIGINT) -> int:
    """Send `signum` to every tracked child still running; how many got it."""
    sent = 0
    for proc in _alive():
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
            sent += 1
    return sent


def stop_children(grace: float | None = None) -> tuple[int, int]:
    """SIGINT every tracked child, wait up to `grace` s, kill the rest: (stopped, killed)."""
    limit = _grace() if grace is None else grace
    stopped = forward(signal.SIGINT)
    deadline = time.monotonic() + limit
    while _alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = 0
    for proc in _alive():
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
            killed += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return stopped - killed, killed


@contextlib.contextmanager
def on_sigterm(state: Callable[[], str], hint: str = "") -> Iterator[None]:
    """
    While the block runs (main thread only), SIGTERM stops the children and raises
    Terminated whose message is `state()`; outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        del signum, frame  # Unused: one signal, wherever it lands.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
        stopped, killed = stop_children()
        children = ""
        if killed:
            children = f"; {killed} child process(es) did not stop in time and were killed"
        elif stopped:
            children = f"; {stopped} child process(es) stopped"
        raise Terminated(f"terminated by SIGTERM: {state()}{children}", hint=hint or None)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _grace() -> float:
    raw = os.environ.get("MDEPLOY_TERM_GRACE_S", "").strip()
    try:
        return max(0.0, min(float(raw), 600.0)) if raw else 8.0
    except ValueError:
        return 8.0
