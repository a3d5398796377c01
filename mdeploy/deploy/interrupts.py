"""
Running a Pulumi CLI call so that Ctrl-C and SIGTERM cancel it cleanly.

The CLI runs in its own session and is tracked (`mdeploy.image._signals`), so mdeploy
decides which signal reaches it: the first Ctrl-C lets it finish the operations in flight
and save the state, a second one stops it and the wait at once. `guarded` wraps every
stack call with that, and maps the engine's failures to CloudError (exit 1).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mdeploy.deploy.engine_errors import failure, state_hint
from mdeploy.deploy.prereqs import PULUMI_INSTALL_HINT
from mdeploy.errors import CloudError, PrerequisiteError
from mdeploy.image._signals import forward, track

if TYPE_CHECKING:
    from mdeploy.deploy.operation import Operation
    from mdeploy.deploy.progress import Progress

__all__ = ["guarded", "term_hint", "tracked_pulumi"]


def guarded(
    stack: Any, call: Callable[[], Any], op: Operation, progress: Progress | None = None
) -> Any:
    """
    Run a stack call: Ctrl-C cancels it, engine failures become CloudError (exit 1).

    The Pulumi CLI runs in its own session (`tracked_pulumi`), so each SIGINT mdeploy gets,
    from a terminal or sent to it alone, is forwarded to the CLI exactly once. On the first,
    the CLI cancels gracefully: it lets the resource operations in flight finish and writes
    the state, and mdeploy keeps waiting for it; leaving earlier would orphan it (its stdout
    closed under it) and, on the local file backend, `pulumi cancel` would delete the lock
    of an update still running. A second Ctrl-C stops the CLI and the wait at once; only
    then is `cancel()` called, to clear the lock a killed CLI leaves.
    """
    from pulumi import automation as auto

    with tracked_pulumi(), _deferred_interrupt() as interrupted:
        try:
            result = call()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                stack.cancel()
            raise
        except auto.CommandError as exc:
            if interrupted():
                raise KeyboardInterrupt from None
            raise CloudError(
                f"stack {op.stack}: {failure(exc, progress)}", hint=state_hint(op)
            ) from None
        except RuntimeError as exc:
            if "summary event never found" not in str(exc):
                raise
            # The SDK's own error when the CLI ended without an engine summary (it crashed
            # or was killed before the engine finished): a runtime failure, not a bug here.
            raise CloudError(
                f"stack {op.stack}: the Pulumi engine ended without a summary",
                hint=state_hint(op),
            ) from None
        except auto.InvalidVersionError as exc:
            raise PrerequisiteError(
                f"the Pulumi CLI is too old for this operation: {exc}", hint=PULUMI_INSTALL_HINT
            ) from None
    if interrupted():
        raise KeyboardInterrupt
    return result


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """
    While a Pulumi CLI call runs: the first SIGINT is noted (the CLI cancels on its own),
    a second one raises KeyboardInterrupt. Yields "was it interrupted?".
    """
    count = 0

    def interrupted() -> bool:
        return count > 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        forward(signal.SIGINT)  # the CLI is in its own session: only we can tell it
        if count > 1:
            raise KeyboardInterrupt
        sys.stderr.write(
            "\ncancelling: Pulumi finishes the operations in flight and saves the state; "
            "press Ctrl-C again to stop waiting now\n"
        )
        sys.stderr.flush()

    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous == signal.SIG_IGN:  # not ours to handle
        yield interrupted
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def tracked_pulumi() -> Iterator[None]:
    """
    Pulumi CLI processes the Automation API starts in the block run in their own session
    and are tracked, so mdeploy decides which signal reaches them (`mdeploy.image._signals`).

    The Automation API offers no hook for its Popen; its module's `subprocess` is replaced
    by a shim for the block. If that internal ever moves, nothing is patched and the CLI
    shares mdeploy's process group as before (a terminal's Ctrl-C then reaches both).
    """
    try:
        from pulumi.automation import _cmd
    except ImportError:
        yield
        return
    real = getattr(_cmd, "subprocess", None)
    if real is None or isinstance(real, _PopenShim) or not hasattr(real, "Popen"):
        yield
        return
    _cmd.subprocess = _PopenShim(real)
    try:
        yield
    finally:
        _cmd.subprocess = real


class _PopenShim:
    """The `subprocess` module, but Popen starts a new session and tracks the child."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def Popen(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("start_new_session", True)
        return track(self._real.Popen(*args, **kwargs))


def term_hint(op: Operation) -> str:
    return (
        f"run `mdeploy up` again to finish (or `mdeploy destroy` to remove what exists); if "
        f"the stack stays locked: `pulumi cancel --stack {op.stack}`"
    )
